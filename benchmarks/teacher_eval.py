"""The teacher on held-out views of the evaluation scenes, against the raw warp and a classical fill.

Three steps, so that the GPU only does the sampling:

``prepare`` (CPU): for fern, dtu_scan24 and fox, the dense prior of the 3 train views of the standard
split (ground-truth poses, the ``cpu`` preset's priors at ``--max-size``: the path the teacher's
training examples went through), then for every test view a 16-frame camera path interpolated
from the nearest train view (frame 0, the reference) to the test view (the last frame), drawn by
the warp stage's renderer. One ``.npz`` per test view: reference image, warped frames, masks and
the test image (ground truth of the last frame only).

``run`` (GPU or CPU): the teacher samples each clip (``fvgen.videomodel.sample.generate_clip``, the
function ``fvgen generate`` uses) and saves the generated last frames.

``score`` (CPU): PSNR/SSIM of the last frame against the test image, on all pixels and on the hole
pixels (warp mask 0), for: the raw warp (holes black), the warp with its holes filled by
scikit-image's biharmonic inpainting or by our harmonic fill (``fvgen.videomodel.fill``, converged), the teacher,
and the teacher's pixels in the holes only (warp kept where it is valid).

    python benchmarks/teacher_eval.py prepare --out .gpu/teacher_eval
    python benchmarks/teacher_eval.py run --clips .gpu/teacher_eval --model fvgen/teacher/weights/embedded --out OUT
    python benchmarks/teacher_eval.py score --clips .gpu/teacher_eval --generated OUT --json benchmarks/results/teacher_eval.json

``average``: the mean frame of several runs (seeds), to separate sampling noise from the prediction.
``scale``: the fill plus a fraction of the teacher's correction (does any of it point the right way?).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


from fvgen.core.datasets import EVAL_ROOT as DATASETS, EVAL_SCENES as SCENES, split_files  # noqa: E402
from fvgen.core.images import resize_image  # noqa: E402

FRAMES = 16


def load_clip(f: Path) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(meta, ref [H, W, 3], warp [F, H, W, 3] floats in [0, 1], masks [F, H, W] bool, gt [H, W, 3] floats)."""
    from fvgen.videomodel.data.shards import decode_frames

    z = np.load(f)
    meta = json.loads(z["meta"].tobytes())
    ref = decode_frames(z["ref"], z["ref_offs"])[0].astype(np.float32) / 255
    warp = decode_frames(z["warp"], z["warp_offs"]).astype(np.float32) / 255
    masks = decode_frames(z["mask"], z["mask_offs"]) > 127
    return meta, ref, warp, masks, z["gt"].astype(np.float32) / 255


def u8(a: np.ndarray) -> np.ndarray:
    return np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)


def nearest_view(cams, target) -> int:
    """The train camera closest to ``target`` (centre distance over the train spread + direction)."""
    C = np.stack([c.center for c in cams])
    scale = np.linalg.norm(C - C.mean(0), axis=1).max() + 1e-9
    d = [np.linalg.norm(c.center - target.center) / scale + np.linalg.norm(c.c2w[:3, 2] - target.c2w[:3, 2])
         for c in cams]
    return int(np.argmin(d))


def scene_priors(name: str, max_size: int, device: str, datasets: Path = DATASETS):
    """The scene's 3-view split as files, and the priors of its train views as every clip here is
    built (the ``cpu`` preset's priors, ground-truth cameras, long side ``max_size``):
    (train files, test files, priors, the images they refer to, the priors conf)."""
    import tempfile

    from fvgen.core.images import load_images
    from fvgen.evaluation.heldout import scene_image_files
    from fvgen.presets import load_preset
    from fvgen.priors.backends import compute_priors

    root = datasets / name
    by_name = {f.name: f for f in scene_image_files(root)}
    train_names, test_names = split_files(name, datasets)
    train_files, test_files = [by_name[n] for n in train_names], [by_name[n] for n in test_names]
    conf = load_preset("cpu").priors
    imgs = load_images(train_files, max_size)
    with tempfile.TemporaryDirectory() as td:
        priors, imgs = compute_priors(imgs, conf, Path(td), root, device)
    return train_files, test_files, priors, imgs, conf


def prepare(out: Path, scenes: list[str], max_size: int, device: str) -> None:
    from fvgen.core.cameras import load_poses
    from fvgen.render.warp import WarpConf
    from fvgen.core.images import read_image, resize_image
    from fvgen.render.warp import render_warp
    from fvgen.videomodel.data.shards import encode_frames
    from fvgen.core.trajectories import interp
    from fvgen.core.undistort import undistort_image

    out.mkdir(parents=True, exist_ok=True)
    for name in scenes:
        root = DATASETS / name
        t0 = time.time()
        train_files, test_files, priors, imgs, _ = scene_priors(name, max_size, device)
        t_priors = time.time() - t0
        size = imgs.size
        test_cams = load_poses(root, [f.name for f in test_files], size)
        for f, cam in zip(test_files, test_cams):
            gt = resize_image(read_image(f), *size)
            if cam.dist:
                gt, cam = undistort_image(gt, cam)
            k = nearest_view(priors.cameras, cam)
            path = interp([replace(priors.cameras[k], dist=None), replace(cam, dist=None)], FRAMES)
            frames, masks = render_warp(priors, path, WarpConf(), device)
            # JPEG (q 95) for the images and PNG for the masks keep the 36 clips small enough to carry
            warp_b, warp_o = encode_frames(u8(np.stack(frames)), "jpeg", quality=95)
            mask_b, mask_o = encode_frames(np.stack(masks).astype(np.uint8) * 255, "png")
            ref_b, ref_o = encode_frames(u8(imgs.images[k])[None], "jpeg", quality=95)
            np.savez_compressed(out / f"{name}__{f.stem}.npz", ref=ref_b, ref_offs=ref_o, warp=warp_b, warp_offs=warp_o,
                     mask=mask_b, mask_offs=mask_o, gt=u8(gt),
                     meta=np.frombuffer(json.dumps({
                                    "scene": name, "test_view": f.name, "ref_view": train_files[k].name,
                                    "train": [t.name for t in train_files], "size": list(size),
                                    "points": len(priors.points), "priors_seconds": round(t_priors, 1),
                                    "coverage_last": float(np.mean(masks[-1]))}).encode(), np.uint8))
        print(f"{name}: {len(test_files)} clips, {len(priors.points)} points, priors {t_priors:.1f}s", flush=True)


def run(clips: Path, model_dir: Path, out: Path, steps: int, cfg: float, device: str, seed: int,
        strength: float = 1.0, invert: bool = False, swap_ref: bool = False) -> None:
    """``invert``: the teacher sees every clip colour-inverted (x -> 1 - x) and its frames are inverted
    back, a probe of whether it tells inverted clips (as in training, ``colour_invert``) from natural ones.
    ``swap_ref``: each clip gets the reference photo of another scene's clip (the next scene's first),
    a probe of how much the teacher draws from its reference view."""
    import torch

    from fvgen.core.devices import resolve_device
    from fvgen.videomodel.model import TeacherModel
    from fvgen.videomodel.sample import generate_clip
    from fvgen.core.video import write_mp4

    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(resolve_device(device))
    model = TeacherModel.from_pretrained(model_dir, dev, torch.float32).eval()
    files = sorted(clips.glob("*.npz"))
    other_ref = {}
    if swap_ref:
        firsts = {}
        for f in files:
            firsts.setdefault(load_clip(f)[0]["scene"], f)
        names = list(firsts)
        other_ref = {s: load_clip(firsts[names[(i + 1) % len(names)]])[1] for i, s in enumerate(names)}
    times, seen = [], set()
    for f in files:
        meta, ref, warp, masks, _ = load_clip(f)
        if swap_ref:
            ref = resize_image(other_ref[meta["scene"]], warp.shape[2], warp.shape[1])
        if invert:
            ref, warp = 1 - ref, 1 - warp
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.time()
        gen = generate_clip(model, lambda a: ref, list(warp), list(masks), steps=steps, cfg=cfg, seed=seed,
                            strength=strength)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.time() - t0)
        if invert:
            gen = [1 - g for g in gen]
        np.savez_compressed(out / f.name, last=u8(gen[-1]))
        if meta["scene"] not in seen:  # one video per scene: warp | teacher
            seen.add(meta["scene"])
            try:  # a preview only: hosts without ffmpeg (the H200 image) skip it
                write_mp4(out / f"{meta['scene']}.mp4", [np.concatenate([w, g], 1) for w, g in zip(warp, gen)], fps=8)
            except Exception as e:  # noqa: BLE001
                print(f"no preview video ({type(e).__name__}: {e})", flush=True)
        print(f"{f.stem}: {times[-1]:.2f}s", flush=True)
    (out / "run.json").write_text(json.dumps({
        "model": str(model_dir), "steps": steps, "cfg": cfg, "strength": strength, "inverted": invert,
        "swapped_reference": swap_ref,
        "device": str(dev), "seed": seed,
        "gpu": torch.cuda.get_device_name() if dev.type == "cuda" else None,
        "seconds_per_clip_median": float(np.median(times)), "clips": len(files),
        "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__}, indent=1))


def average(inputs: list[Path], out: Path) -> None:
    """The per-pixel mean of several runs' last frames (e.g. seeds): how much of a run's error is its
    sampling noise rather than its prediction."""
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(f.name for f in inputs[0].glob("*.npz"))
    for n in names:
        frames = [np.load(d / n)["last"].astype(np.float32) for d in inputs]
        np.savez_compressed(out / n, last=np.round(np.mean(frames, 0)).astype(np.uint8))
    print(f"{len(names)} frames, mean of {len(inputs)} runs -> {out}")


def remove_shift(corr: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``corr`` [H, W, 3] less its per-channel mean over the seen pixels (``mask``) and, apart, over the holes."""
    out = corr.copy()
    for region in (mask, ~mask):
        if region.any():
            out[region] -= corr[region].mean(0)
    return out


def scale(clips: Path, generated: Path, out: Path, alpha: float, unshift: bool) -> None:
    """Frames ``fill + alpha * (teacher - fill)`` (harmonic fill of the last warped frame): does any
    part of the teacher's correction point the right way? ``unshift`` first takes the correction's
    mean out, over the holes and over the seen pixels separately (the brightness shift, hole_bias.py)."""
    from fvgen.videomodel.fill import harmonic_fill_np

    out.mkdir(parents=True, exist_ok=True)
    for f in sorted(clips.glob("*.npz")):
        _, _, warps, masks, _ = load_clip(f)
        fill = harmonic_fill_np(warps[-1], masks[-1])
        corr = np.load(generated / f.name)["last"].astype(np.float32) / 255 - fill
        if unshift:
            corr = remove_shift(corr, masks[-1])
        np.savez_compressed(out / f.name, last=u8(fill + alpha * corr))
    print(f"fill + {alpha} x correction{' (unshifted)' if unshift else ''} -> {out}")


BASELINES = ("warp", "biharmonic", "harmonic")


def score(clips: Path, generated: Path | None, out_json: Path | None, partial: bool = False,
          baselines: tuple[str, ...] = BASELINES) -> dict:
    """Metrics of every method on every clip; without ``generated`` the baselines alone; with
    ``partial`` only the clips that have a generated frame (all methods on the same views).
    ``baselines`` picks among the raw warp and the two fills (the biharmonic fill takes minutes a
    clip set on one core: leave it out where the baselines are scored elsewhere)."""
    from fvgen.videomodel.fill import biharmonic_fill, harmonic_fill_np
    from fvgen.core.metrics import clip_metrics

    unknown = set(baselines) - set(BASELINES)
    if unknown:
        raise SystemExit(f"error: unknown baselines {sorted(unknown)} (known: {', '.join(BASELINES)})")
    fills = {"warp": lambda w, m: w, "biharmonic": biharmonic_fill, "harmonic": harmonic_fill_np}
    methods_used = tuple(baselines)
    if generated is not None:
        methods_used += ("teacher", "teacher_in_holes")
    rows = []
    for f in sorted(clips.glob("*.npz")):
        g = generated / f.name if generated is not None else None
        if g is not None and not g.is_file():
            if partial:
                continue
            raise SystemExit(f"error: no generated frame for {f.name} in {generated} (--partial scores the others)")
        meta, _, warps, masks, gt = load_clip(f)
        warp, mask = warps[-1], masks[-1]
        methods = {k: fills[k](warp, mask) for k in baselines}
        if g is not None:
            teacher = np.load(g)["last"].astype(np.float32) / 255
            methods.update(teacher=teacher, teacher_in_holes=np.where(mask[..., None], warp, teacher))
        row = {"scene": meta["scene"], "view": meta["test_view"], "coverage": float(mask.mean())}
        for k, img in methods.items():
            row[k] = clip_metrics([img], [gt], [mask])
        rows.append(row)
    summary = {}
    for scene in [s for s in SCENES if any(r["scene"] == s for r in rows)] + ["all"]:
        rs = [r for r in rows if scene in ("all", r["scene"])]
        summary[scene] = {"views": len(rs), "coverage": float(np.mean([r["coverage"] for r in rs]))}
        for k in methods_used:
            summary[scene][k] = {m: float(np.nanmean([r[k][m] if r[k][m] is not None else np.nan for r in rs]))
                                 for m in ("psnr", "ssim", "psnr_holes", "ssim_holes")}
    res = {"summary": summary, "views": rows, "machine": platform.node(), "date": time.strftime("%Y-%m-%d"),
           "partial": bool(partial)}
    if generated is not None and (generated / "run.json").is_file():
        res["run"] = json.loads((generated / "run.json").read_text())
    if out_json:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(res, indent=1))
    print("| scene | views | coverage | method | PSNR all | SSIM all | PSNR holes | SSIM holes |")
    print("|---|---|---|---|---|---|---|---|")
    for scene, s in summary.items():
        for k in methods_used:
            m = s[k]
            print(f"| {scene} | {s['views']} | {s['coverage']:.2f} | {k} | {m['psnr']:.2f} | {m['ssim']:.3f} | "
                  f"{m['psnr_holes']:.2f} | {m['ssim_holes']:.3f} |")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--scenes", nargs="*", default=list(SCENES))
    p.add_argument("--max-size", type=int, default=320)
    p.add_argument("--device", default="cpu")
    r = sub.add_parser("run")
    r.add_argument("--clips", type=Path, required=True)
    r.add_argument("--model", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--steps", type=int, default=50)
    r.add_argument("--cfg", type=float, default=3.0)
    r.add_argument("--strength", type=float, default=1.0, help="SDEdit start, (0, 1] (fvgen generate --strength)")
    r.add_argument("--device", default="auto")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--invert", action="store_true", help="feed the clips colour-inverted, invert the frames back")
    r.add_argument("--swap-ref", action="store_true", help="give each clip another scene's reference photo")
    s = sub.add_parser("score")
    s.add_argument("--clips", type=Path, required=True)
    s.add_argument("--generated", type=Path, default=None, help="the run's output (left out: baselines only)")
    s.add_argument("--partial", action="store_true", help="score only the clips that have a generated frame")
    s.add_argument("--json", type=Path, default=None)
    s.add_argument("--baselines", default=",".join(BASELINES),
                   help=f"comma-separated, of {', '.join(BASELINES)} (empty: none)")
    v = sub.add_parser("average")
    v.add_argument("--inputs", type=Path, nargs="+", required=True, help="run output folders (same clips)")
    v.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("scale")
    c.add_argument("--clips", type=Path, required=True)
    c.add_argument("--generated", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--alpha", type=float, required=True, help="the part of the teacher's correction kept")
    c.add_argument("--unshift", action="store_true", help="take the correction's mean shift out first")
    a = ap.parse_args()
    if a.cmd == "prepare":
        prepare(a.out, a.scenes, a.max_size, a.device)
    elif a.cmd == "run":
        run(a.clips, a.model, a.out, a.steps, a.cfg, a.device, a.seed, a.strength, a.invert, a.swap_ref)
    elif a.cmd == "scale":
        scale(a.clips, a.generated, a.out, a.alpha, a.unshift)
    elif a.cmd == "average":
        average(a.inputs, a.out)
    else:
        score(a.clips, a.generated, a.json, a.partial, tuple(b for b in a.baselines.split(",") if b))


if __name__ == "__main__":
    main()
