"""What the holes hold, beside the fill of them: training examples against the evaluation views.

For every warped frame, the *needed correction* in the holes is the mean of (ground truth minus the
harmonic fill) over the hole pixels, per colour channel ([0, 1] units): positive where the unseen
content is brighter than the fill spreads from around it. Reported per scene for

- the evaluation views (``--clips``, made by ``teacher_eval.py prepare``: the last frame of each
  clip, the test view of fern, dtu_scan24 or fox); with ``--generated`` (a ``teacher_eval.py run``
  output) also the teacher's mean shift from the fill in the holes and on the seen pixels, and its
  PSNR with those two shifts taken out (is the shift all that is wrong?);
- built training examples (``--examples``, made by ``fvgen data build``: every
  frame of every clip), grouped by their source scene (procedural rooms as one group).

With ``--model`` (a teacher folder) the examples are also generated with the teacher (the one-step
prediction at t = T, and with ``--sdedit`` SDEdit at strength 0.25; CFG 1, on this machine) and scored like
``teacher_eval.py``'s PSNR on all pixels against the fill alone, with the teacher's own mean shift in
the holes: does the model beat its fill on the training distribution, and does it shift the holes
the way the training scenes need?

    fvgen data build --out /tmp/pool --scenes .gpu/train_scenes/*/ --per-scene 2 \\
        --procedural 6 --clips-per-prior 3 --no-triangulate --device cpu --workers 2 --max-size 320 \\
        --seed 7 --preset embedded
    python benchmarks/hole_bias.py --clips .gpu/teacher_eval [--generated .gpu/run6/teacher_gen/one_step] \\
        --examples /tmp/pool [--model .gpu/run6/model --per-group 3] --json benchmarks/results/hole_bias.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch


from teacher_eval import load_clip, remove_shift  # noqa: E402
from fvgen.core import metrics  # noqa: E402
from fvgen.videomodel.fill import harmonic_fill_np  # noqa: E402


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    """:func:`fvgen.core.metrics.psnr` of a prediction clipped to [0, 1] (a fill plus a correction may leave it)."""
    return metrics.psnr(torch.from_numpy(np.clip(pred, 0, 1)), torch.from_numpy(gt))


def hole_mean(diff: np.ndarray, holes: np.ndarray) -> list[float] | None:
    """Per-channel mean of ``diff`` [..., H, W, 3] over ``holes`` [..., H, W] (None without holes)."""
    return [float(v) for v in diff[holes].mean(0)] if holes.any() else None


def hole_shape(mask: np.ndarray) -> dict:
    """Shape of the holes of masks [..., H, W] (True = seen), averaged over frames: hole fraction, the
    share of hole pixels within 2 px of a seen pixel (thin gaps and band edges), and the largest
    connected hole as a fraction of the frame (one big unseen region or scattered gaps?)."""
    from scipy.ndimage import distance_transform_edt, label

    m = mask.reshape(-1, *mask.shape[-2:])
    thin, largest = [], []
    for f in m:
        holes = ~f
        if not holes.any():
            thin.append(0.0), largest.append(0.0)
            continue
        dist = distance_transform_edt(holes) if f.any() else np.full(f.shape, np.inf)
        thin.append(float((dist[holes] <= 2).mean()))
        lab, n = label(holes)
        largest.append(float(np.bincount(lab.ravel())[1:].max() / f.size))
    return {"hole_fraction": float(1 - m.mean()), "hole_thin_share": float(np.mean(thin)),
            "hole_largest": float(np.mean(largest))}


def eval_views(clips: Path, generated: Path | None) -> list[dict]:
    rows = []
    for f in sorted(clips.glob("*.npz")):
        meta, _, warps, masks, gt = load_clip(f)
        mask = masks[-1]
        fill = harmonic_fill_np(warps[-1], mask)
        row = {"group": meta["scene"], "coverage": float(mask.mean()), "needed": hole_mean(gt - fill, ~mask),
               **hole_shape(mask)}
        if generated is not None:  # a teacher's frames (teacher_eval.py run): its shift, and without it
            gen = np.load(generated / f.name)["last"].astype(np.float32) / 255
            corr = gen - fill
            unshifted = remove_shift(corr, mask)
            row.update(psnr_fill=psnr(fill, gt), psnr_teacher=psnr(gen, gt), psnr_teacher_unshifted=psnr(fill + unshifted, gt),
                       shift_teacher=hole_mean(corr, ~mask), shift_teacher_seen=hole_mean(corr, mask))
        rows.append(row)
    return rows


def training_examples(folder: Path, model_dir: Path | None, per_group: int, sdedit: bool,
                      frame_stride: int = 1) -> list[dict]:
    from fvgen.videomodel.data import example_files, load_example

    model = None
    if model_dir is not None:
        from fvgen.videomodel.model import TeacherModel
        from fvgen.videomodel.sample import generate_clip

        model = TeacherModel.from_pretrained(model_dir, "cpu").eval()
    rows, taken = [], defaultdict(int)
    for f in example_files([folder]):
        ex = load_example(f)
        src = ex["meta"].get("source", f.stem)
        group = ("procedural" if src.startswith("procedural")
                 else "/".join(src.split("/")[:2]) if src.startswith("photos/") else src.split("/")[-1])
        if taken[group] >= per_group:
            continue
        taken[group] += 1
        n = model.preset.frames if model is not None else len(ex["gt"])
        keep = slice(0, n, frame_stride) if model is None else slice(0, n)  # the model needs whole clips
        warp = ex["warp"][keep].astype(np.float32) / 255
        mask = ex["mask"][keep] > 127  # [F, H, W]
        gt = ex["gt"][keep].astype(np.float32) / 255
        fill = np.stack([harmonic_fill_np(w, m) for w, m in zip(warp, mask)])
        row = {"group": group, "file": f.name,
               "coverage": float(mask.mean()), "needed": hole_mean(gt - fill, ~mask), "psnr_fill": psnr(fill, gt),
               **hole_shape(mask)}
        if model is not None:
            ref = ex["ref"].astype(np.float32) / 255  # [H, W, 3]
            runs = [("one_step", dict(steps=1))] + ([("sdedit_0.25", dict(steps=50, strength=0.25))] if sdedit else [])
            for name, kw in runs:
                out = np.stack(generate_clip(model, lambda a: ref, list(warp), list(mask), cfg=1.0, seed=0, **kw))
                row[f"psnr_{name}"] = psnr(out, gt)
                row[f"shift_{name}"] = hole_mean(out - fill, ~mask)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def summarise(rows: list[dict]) -> dict:
    groups = defaultdict(list)
    for r in rows:
        groups[r["group"]].append(r)
        groups["all"].append(r)
    out = {}
    for g, rs in groups.items():
        s = {"n": len(rs), "coverage": float(np.mean([r["coverage"] for r in rs]))}
        for k in rs[0]:
            vals = [r[k] for r in rs if r.get(k) is not None]
            if k.startswith(("needed", "shift")) and vals:
                s[k] = [round(float(v), 3) for v in np.mean(vals, 0)]
            elif k.startswith("psnr") and vals:
                s[k] = round(float(np.mean(vals)), 2)
            elif k.startswith("hole_") and vals:
                s[k] = round(float(np.mean(vals)), 3)
        out[g] = s
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=Path, help="evaluation clips (teacher_eval.py prepare)")
    ap.add_argument("--generated", type=Path, help="with --clips: a teacher's frames (teacher_eval.py run --out)")
    ap.add_argument("--examples", type=Path, help="built training examples (fvgen data build)")
    ap.add_argument("--model", type=Path, help="teacher folder: also generate the examples and score them")
    ap.add_argument("--per-group", type=int, default=1000, help="at most this many examples per source scene")
    ap.add_argument("--frame-stride", type=int, default=1,
                    help="without --model: every k-th frame of each example only (the fill is most of the cost)")
    ap.add_argument("--sdedit", action="store_true", help="with --model: also SDEdit at strength 0.25 (slow on a CPU)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--note", default="", help="recorded in the JSON (e.g. the build command)")
    a = ap.parse_args()
    if a.clips is None and a.examples is None:
        raise SystemExit("error: pass --clips and/or --examples")
    res = {"machine": platform.node(), "date": time.strftime("%Y-%m-%d"), "model": str(a.model) if a.model else None,
           "examples": str(a.examples) if a.examples else None, "note": a.note}
    if a.clips is not None:
        res["evaluation"] = summarise(eval_views(a.clips, a.generated))
    if a.examples is not None:
        res["training"] = summarise(training_examples(a.examples, a.model, a.per_group, a.sdedit, a.frame_stride))
        res["frame_stride"] = a.frame_stride
    for part in ("evaluation", "training"):
        for g, s in res.get(part, {}).items():
            extra = "  ".join(f"{k} {v}" for k, v in s.items() if k.startswith(("psnr", "shift", "hole_")))
            print(f"{part:10s} {g:16s} n={s['n']:3d} coverage {s['coverage']:.2f} needed {s.get('needed')}  {extra}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
