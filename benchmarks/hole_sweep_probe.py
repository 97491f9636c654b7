"""Is the holes' content in the input photos? A plane sweep from each held-out camera, against the fill.

For each of the 36 evaluation clips (``teacher_eval.py prepare``: the last frame is a held-out view of
fern, dtu_scan24 or fox), the hole pixels of the warp get the colour of a plane sweep *from the
held-out camera*: each of ``--planes`` fronto-parallel planes (uniform in inverse depth over the
cloud's depth range seen from that camera) is textured by projecting every input photo onto it, and a
pixel takes the mean colour of the plane where the inputs agree best (variance across the inputs,
averaged over a ``--window`` box). Where all inputs see the pixel and agree below a threshold, that
colour replaces the hole; the remaining holes get the harmonic fill (seeded by those colours; and, as
``_unseeded``, the fill of the warp alone with only those pixels replaced, also scored on them alone).
PSNR on the hole pixels and on the whole frame, against the harmonic fill of the same warp, per threshold.

This measures whether a generator could take what the fill lacks from the scene itself (photo
consistency of the inputs), rather than from what it learned: the teacher's x0 prediction barely
moves from the fill in large holes, and ignores its reference photo (benchmarks/RESULTS.md, "Teacher").

    python benchmarks/hole_sweep_probe.py --clips .gpu/teacher_eval --json benchmarks/results/hole_sweep_probe.json

(CPU: the priors of the three scenes again, about 1 minute, then about 10 s a view.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from teacher_eval import DATASETS, load_clip, scene_priors  # noqa: E402

from fvgen.core import metrics  # noqa: E402
from fvgen.videomodel.fill import harmonic_fill, torch_fill_np  # noqa: E402


def sweep_colour(images: list[np.ndarray], cameras, target, depths: torch.Tensor, window: int):
    """Per pixel of ``target``: (colour [H, W, 3] of the best-agreeing plane, its cost [H, W] (inf where
    fewer than two inputs see it), the number of inputs that see it there [H, W])."""
    H, W = target.height, target.width
    u, v = torch.meshgrid(torch.arange(W, dtype=torch.float64), torch.arange(H, dtype=torch.float64), indexing="xy")
    rays = torch.stack([u, v, torch.ones_like(u)], -1) @ torch.from_numpy(np.linalg.inv(target.K)).T
    c2w = torch.from_numpy(target.c2w)
    ims = [torch.from_numpy(np.asarray(im, np.float32)).permute(2, 0, 1)[None] for im in images]
    w2cs = [torch.from_numpy(np.linalg.inv(c.c2w)) for c in cameras]
    best = torch.full((H, W), float("inf"))
    colour, count = torch.zeros(H, W, 3), torch.zeros(H, W)
    for d in depths:
        xw = (rays * d) @ c2w[:3, :3].T + c2w[:3, 3]
        samples, seen = [], []
        for cam, im, w2c in zip(cameras, ims, w2cs):
            q = (xw @ w2c[:3, :3].T + w2c[:3, 3]) @ torch.from_numpy(cam.K).T
            z = q[..., 2]
            gx = (q[..., 0] / z + 0.5) / cam.width * 2 - 1
            gy = (q[..., 1] / z + 0.5) / cam.height * 2 - 1
            samples.append(F.grid_sample(im, torch.stack([gx, gy], -1).float()[None], align_corners=False,
                                         padding_mode="border")[0])
            seen.append(((z > 0) & (gx.abs() < 1) & (gy.abs() < 1)).float())
        s, m = torch.stack(samples), torch.stack(seen)[:, None]
        n = m.sum(0)
        mean = (s * m).sum(0) / n.clamp(min=1)
        var = (((s - mean) ** 2) * m).sum(0).mean(0, keepdim=True) / n.clamp(min=1)
        cost = F.avg_pool2d(var[None], window, 1, window // 2, count_include_pad=False)[0, 0]
        cost = torch.where(n[0] >= 2, cost, torch.full_like(cost, float("inf")))
        better = cost < best
        best = torch.where(better, cost, best)
        colour = torch.where(better[..., None], mean.permute(1, 2, 0), colour)
        count = torch.where(better, n[0], count)
    return colour.numpy(), best.numpy(), count.numpy()


def psnr(a: np.ndarray, b: np.ndarray, m: np.ndarray | None = None) -> float:
    return metrics.psnr(torch.from_numpy(a), torch.from_numpy(b), None if m is None else torch.from_numpy(m))


def harmonic(img: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The fill the video models condition on (60 sweeps a level), clipped to [0, 1]."""
    return np.clip(torch_fill_np(harmonic_fill, img, valid), 0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=Path, required=True)
    ap.add_argument("--scenes", nargs="+", default=["fern", "dtu_scan24", "fox"])
    ap.add_argument("--planes", type=int, default=64)
    ap.add_argument("--window", type=int, default=9)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[1e-4, 2e-4, 3e-4, 5e-4])
    ap.add_argument("--min-views", type=int, default=3, help="inputs that must see a pixel for its sweep colour")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    from fvgen.core.cameras import load_poses
    from fvgen.core.undistort import undistort_image
    from fvgen.core.images import read_image, resize_image

    torch.set_num_threads(2)
    rows = []
    for name in a.scenes:
        _, test_files, priors, imgs, _ = scene_priors(name, 320, "cpu")
        test_cams = load_poses(DATASETS / name, [f.name for f in test_files], imgs.size)
        for f, cam in zip(test_files, test_cams):
            if cam.dist:
                _, cam = undistort_image(resize_image(read_image(f), *imgs.size), cam)
            _, _, warp, masks, gt = load_clip(a.clips / f"{name}__{f.stem}.npz")
            w, seen = warp[-1], masks[-1]
            hole = ~seen
            pc = priors.points.xyz @ cam.w2c[:3, :3].T + cam.w2c[:3, 3]
            z = pc[:, 2][pc[:, 2] > 1e-6]
            near, far = np.percentile(z, 0.5) * 0.7, np.percentile(z, 99.5) * 1.3
            depths = 1 / torch.linspace(1 / near, 1 / far, a.planes, dtype=torch.float64)
            t0 = time.time()
            colour, cost, count = sweep_colour(list(imgs.images), priors.cameras, cam, depths, a.window)
            fill = harmonic(w, seen)
            row = {"scene": name, "view": f.stem, "holes": float(hole.mean()), "sweep_s": round(time.time() - t0, 2),
                   "fill": {"hole": psnr(fill, gt, hole), "all": psnr(fill, gt)}}
            for t in a.thresholds:
                use = hole & np.isfinite(cost) & (cost < t) & (count >= a.min_views)
                img = w.copy()
                img[use] = colour[use]
                out = harmonic(img, seen | use)
                row[f"sweep_{t:g}"] = {"hole": psnr(out, gt, hole), "all": psnr(out, gt),
                                       "used": float(use.sum() / max(hole.sum(), 1))}
                # the same pixels over the fill of the warp alone: do they seed the fill with wrong colours?
                only = fill.copy()
                only[use] = colour[use]
                row[f"sweep_{t:g}_unseeded"] = {"hole": psnr(only, gt, hole), "all": psnr(only, gt),
                                                "used_pixels_sweep": psnr(colour, gt, use) if use.any() else None,
                                                "used_pixels_fill": psnr(fill, gt, use) if use.any() else None}
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for group in [*a.scenes, "all"]:
        rs = [r for r in rows if group in ("all", r["scene"])]
        summary[group] = {k: {m: round(float(np.mean([r[k][m] for r in rs if r[k][m] is not None])), 3)
                              for m in rs[0][k]} for k in rs[0] if isinstance(rs[0][k], dict)}
        for k in summary[group]:
            if k != "fill":
                summary[group][k]["views_worse"] = sum(r[k]["all"] < r["fill"]["all"] for r in rs)
        print(group, json.dumps(summary[group]))
    if a.json:
        a.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "summary": summary,
                                      "views": rows}, indent=1))


if __name__ == "__main__":
    main()
