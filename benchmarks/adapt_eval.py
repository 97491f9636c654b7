"""Test-time adaptation (fvgen.videomodel.adapt) on the held-out views: its cost and its gain.

For each evaluation scene (fern, dtu_scan24, fox): the dense prior of the 3 train views of the
standard split, made exactly as ``teacher_eval.py prepare`` makes it (ground-truth poses, the ``cpu``
preset's priors at ``--max-size``); the teacher adapted to those 3 views (leave one out: the prior of
the other two, by the same plane-sweep stereo, drawn into each); then every prepared clip of the
scene generated with the adapted model, the last frames written as ``teacher_eval.py run`` writes
them, so ``teacher_eval.py score`` scores them. ``--steps 0`` is the unadapted baseline of the same
run (same sampling settings and seed).

    python benchmarks/teacher_eval.py prepare --out .gpu/teacher_eval
    python benchmarks/adapt_eval.py --clips .gpu/teacher_eval --model MODEL --out .gpu/adapt/s0 --steps 0 --device cuda
    python benchmarks/adapt_eval.py --clips .gpu/teacher_eval --model MODEL --out .gpu/adapt/s50 --steps 50 --device cuda
    python benchmarks/teacher_eval.py score --clips .gpu/teacher_eval --generated .gpu/adapt/s50 \\
        --json benchmarks/results/adapt_eval_s50.json

Writes ``OUT/adapt.json``: per scene the leave-one-out pairs' coverage, the held leave-one-out loss
before and after, trainable weights, seconds for the pairs, the steps and the generation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fvgen.core.datasets import EVAL_ROOT as DATASETS, EVAL_SCENES as SCENES  # noqa: E402
from teacher_eval import load_clip, scene_priors, u8  # noqa: E402


def scene_inputs(name: str, max_size: int, device: str, datasets: Path = DATASETS):
    """(images [3, H, W, 3] in [0, 1], cameras, priors, priors conf): what ``prepare`` builds."""
    _, _, priors, imgs, conf = scene_priors(name, max_size, device, datasets)
    return np.asarray(imgs.images, np.float32), priors.cameras, priors, conf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=Path, required=True, help="teacher_eval.py prepare output")
    ap.add_argument("--model", type=Path, required=True, help="teacher model folder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--scenes", nargs="*", default=list(SCENES))
    ap.add_argument("--data", type=Path, default=DATASETS,
                    help="folder of the evaluation scenes (eval_scenes.py --copy-data's copy on a GPU host)")
    ap.add_argument("--steps", type=int, default=50, help="adaptation steps (0: the unadapted baseline)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--rank", type=int, default=4, help="LoRA rank; 0: all weights")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--prior", default="auto", help="leave-one-out prior: auto, mvs or visibility")
    ap.add_argument("--gen-steps", type=int, default=1, help="sampling steps (1: the one-step prediction)")
    ap.add_argument("--cfg", type=float, default=1.0)
    ap.add_argument("--strength", type=float, default=1.0)
    ap.add_argument("--max-size", type=int, default=320)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    import torch

    from fvgen.core.devices import resolve_device
    from fvgen.videomodel.adapt import AdaptConf, adapt
    from fvgen.videomodel.model import TeacherModel
    from fvgen.videomodel.sample import generate_clip

    dev = resolve_device(a.device)
    a.out.mkdir(parents=True, exist_ok=True)
    base = TeacherModel.from_pretrained(a.model, dev, torch.float32).eval()
    conf = AdaptConf(steps=a.steps, lr=a.lr, rank=a.rank, batch=a.batch, prior=a.prior, seed=a.seed)
    res = {"model": str(a.model), "conf": {k: getattr(conf, k) for k in ("steps", "lr", "rank", "batch", "prior",
                                                                          "clips_per_view")},
           "device": dev, "gpu": torch.cuda.get_device_name() if dev.startswith("cuda") else None,
           "sampling": {"steps": a.gen_steps, "cfg": a.cfg, "strength": a.strength, "seed": a.seed},
           "date": time.strftime("%Y-%m-%d"), "scenes": {}}
    for name in a.scenes:
        files = sorted(a.clips.glob(f"{name}__*.npz"))
        if not files:
            continue
        t0 = time.time()
        imgs, cams, priors, pconf = scene_inputs(name, a.max_size, dev, a.data)
        t_priors = time.time() - t0
        model, rep = adapt(base, imgs, cams, priors, conf, dev, pconf)
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        times = []
        for f in files:
            _, ref, warp, masks, _ = load_clip(f)
            t1 = time.time()
            gen = generate_clip(model, lambda i: ref, list(warp), list(masks), steps=a.gen_steps, cfg=a.cfg,
                                seed=a.seed, strength=a.strength)
            times.append(time.time() - t1)
            np.savez_compressed(a.out / f.name, last=u8(gen[-1]))
        res["scenes"][name] = {**rep, "seconds_priors": round(t_priors, 1), "eval_clips": len(files),
                               "seconds_per_clip": round(float(np.median(times)), 2)}
        print(name, json.dumps(res["scenes"][name]), flush=True)
        (a.out / "adapt.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
