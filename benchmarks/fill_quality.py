"""Classical fills of the warps' holes on the held-out evaluation views: quality and CPU time.

For the last frame of every clip made by ``teacher_eval.py prepare`` (the test view; 36 views of
fern, dtu_scan24 and fox), fills the warp's holes with each method and scores the frame against
the test image with :func:`fvgen.core.metrics.clip_metrics` (PSNR/SSIM on all pixels and on
the hole pixels), as ``teacher_eval.py score`` does. Methods: push-pull, scikit-image's
biharmonic inpainting (on a copy downscaled to 160 pixels, the evaluation's baseline, and at full
resolution), and :func:`fvgen.videomodel.fill.harmonic_fill` at several sweep counts.

    python benchmarks/fill_quality.py --clips .gpu/teacher_eval --json benchmarks/results/fill_quality.json
    python benchmarks/fill_quality.py --timing   # seconds for 16 frames at three sizes, synthetic holes
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch


from teacher_eval import load_clip  # noqa: E402
from fvgen.videomodel.fill import harmonic_fill, push_pull_fill  # noqa: E402
from fvgen.videomodel.fill import biharmonic_fill, harmonic_fill_np, torch_fill_np  # noqa: E402
from fvgen.core.metrics import clip_metrics  # noqa: E402


def _torch_fill(fn, **kw):
    return lambda frame, mask: torch_fill_np(fn, frame, mask, **kw)


METHODS = {
    "push-pull": _torch_fill(push_pull_fill),
    "biharmonic (160 px, the baseline)": lambda f, m: biharmonic_fill(f, m, max_size=160),
    "biharmonic (full resolution)": lambda f, m: biharmonic_fill(f, m, max_size=10 ** 6),
    "harmonic, 30 sweeps, omega 1.9": _torch_fill(harmonic_fill, iters=30, omega=1.9),
    "harmonic, 60 sweeps, omega 1.95 (default)": _torch_fill(harmonic_fill),
    "harmonic, 300 sweeps (teacher_eval's baseline)": harmonic_fill_np,
}


def timing() -> None:
    """Seconds to fill 16 random frames (a quarter-frame hole, 40 % of the other pixels unseen)."""
    g = torch.Generator().manual_seed(0)
    print("| size | harmonic (default) s | push-pull s |\n|---|---|---|")
    for H, W in ((160, 256), (384, 512), (540, 960)):
        x = torch.rand(16, 3, H, W, generator=g)
        m = (torch.rand(16, 1, H, W, generator=g) > 0.4).float()
        m[..., H // 4:H // 2, W // 4:W // 2] = 0
        t0 = time.time()
        harmonic_fill(x, m)
        t1 = time.time()
        push_pull_fill(x, m)
        print(f"| {W}x{H} | {t1 - t0:.2f} | {time.time() - t1:.3f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=Path, default=None)
    ap.add_argument("--timing", action="store_true", help="only time the fills at three frame sizes")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.timing:
        return timing()
    if a.clips is None:
        raise SystemExit("error: --clips is required (or --timing)")
    clips = [load_clip(f) for f in sorted(a.clips.glob("*.npz"))]
    if not clips:
        raise SystemExit(f"error: no clips in {a.clips} (teacher_eval.py prepare makes them)")
    results = {}
    print("| fill | ms / frame | PSNR all | SSIM all | PSNR holes | SSIM holes |\n|---|---|---|---|---|---|")
    for name, fill in METHODS.items():
        rows, seconds = [], 0.0
        for _, _, warps, masks, gt in clips:
            t0 = time.time()
            out = fill(warps[-1], masks[-1])
            seconds += time.time() - t0
            rows.append(clip_metrics([out], [gt], [masks[-1]]))
        r = {q: float(np.nanmean([x[q] for x in rows if x[q] is not None]))
             for q in ("psnr", "ssim", "psnr_holes", "ssim_holes")}
        r["ms_per_frame"] = 1000 * seconds / len(clips)
        results[name] = r
        print(f"| {name} | {r['ms_per_frame']:.0f} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
              f"{r['psnr_holes']:.2f} | {r['ssim_holes']:.3f} |", flush=True)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"command": "python " + " ".join(sys.argv), "views": len(clips),
                                      "threads": a.threads, "machine": platform.node(),
                                      "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
                                      "methods": results}, indent=1))


if __name__ == "__main__":
    main()
