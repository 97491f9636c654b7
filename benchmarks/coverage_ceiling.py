"""How much of each held-out view can 3 input views cover at all? A ceiling for issue 17's coverage targets.

Dense stereo from 3 views can only place a point that at least 2 of them see (the reference view and
one that confirms it: ``min_consistent_views = 1``). This script estimates, per held-out camera, the
fraction of its pixels whose surface point is seen by 0, 1, 2 or 3 of the train views:

1. A reference cloud from many views of the scene (``--ref-every K``: every K-th camera of the
   dataset, train and test views included: this is a measurement of the evaluation scenes, never
   training data), with the same dense stereo as the priors (``--mvs`` settings).
2. Its depth rendered at each held-out camera (tight splats); each covered pixel is lifted to the
   world and projected into each train view: seen there when it lands inside the frame and no
   nearer reference surface covers it (its depth within ``--tol`` of that view's rendered depth).

Reported per scene: the reference cloud's own coverage of the held-out views (pixels it cannot
place are unknown), and among the covered pixels the fraction seen by >= 1 and >= 2 train views.
The ceiling on the prior's coverage is about ``reference coverage x fraction seen by >= 2``, a lower
bound of it where the reference misses surfaces the train views do see.

    python benchmarks/coverage_ceiling.py --scenes dtu_scan24 fern --ref-every 2 \
        --mvs max_image_size=320 num_planes=64 propagation_iters=2 ncc_threshold=0.55
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from fvgen.core.cameras import read_cameras_opencv_json
from fvgen.core.config import from_dict, parse_assignments
from fvgen.core.datasets import EVAL_ROOT as DATASETS, split
from fvgen.priors.mvs import MvsConf, dense_point_cloud
from fvgen.render.points import SPACING_TO_RADIUS, render_points, typical_spacing

from warp_quality import load_view, scene_image_size  # noqa: E402 (benchmarks/ on sys.path when run as a script)


def lift(depth: np.ndarray, cam) -> np.ndarray:
    """Pixels with depth > 0 of camera ``cam`` -> world points [M, 3] (pixel centres at integers)."""
    ys, xs = np.nonzero(depth > 0)
    z = depth[ys, xs].astype(np.float64)
    pix = np.stack([xs * z, ys * z, z], 0)
    pc = np.linalg.inv(cam.K) @ pix
    c2w = np.linalg.inv(cam.w2c)
    return (c2w[:3, :3] @ pc + c2w[:3, 3:4]).T


def seen_in(points: np.ndarray, cam, depth: np.ndarray, tol: float) -> np.ndarray:
    """Whether each world point is in ``cam``'s frame and not behind its rendered ``depth`` (relative ``tol``)."""
    pc = cam.w2c[:3, :3] @ points.T + cam.w2c[:3, 3:4]
    z = pc[2]
    uv = (cam.K @ pc)[:2] / np.maximum(z, 1e-9)
    u, v = np.round(uv[0]).astype(int), np.round(uv[1]).astype(int)
    H, W = depth.shape
    inside = (z > 1e-6) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    d = np.zeros_like(z)
    d[inside] = depth[v[inside], u[inside]]
    # seen: the view renders no surface there (nothing nearer) or its surface is this one
    return inside & ((d <= 0) | (z <= d * (1 + tol)))


def run_scene(name: str, conf: MvsConf, every: int, tol: float, device: str) -> dict:
    root = DATASETS / name
    cams = read_cameras_opencv_json(root / "cameras_opencv.json")
    train, test = split(name, cams)
    size = scene_image_size(name)
    ref_ids = sorted(set(range(0, len(cams), every)) | set(train))
    views = [load_view(root, cams[i], size) for i in ref_ids]
    t0 = time.time()
    cloud, _ = dense_point_cloud(np.stack([v[0] for v in views]), [v[1] for v in views], None, conf, device=device)
    t_mvs = time.time() - t0
    radius = SPACING_TO_RADIUS * typical_spacing(cloud.xyz)
    xyz, rgb = torch.from_numpy(cloud.xyz).to(device), torch.from_numpy(cloud.rgb).to(device)

    def depth_at(cam):
        _, mask, depth = render_points(xyz, rgb, cam.K, cam.w2c, cam.width, cam.height, world_radius=radius)
        return depth.cpu().numpy() * mask.cpu().numpy()

    train_cams = [load_view(root, cams[i], size)[1] for i in train]
    train_depths = [depth_at(c) for c in train_cams]
    rows = []
    for i in test:
        cam = load_view(root, cams[i], size)[1]
        depth = depth_at(cam)
        pts = lift(depth, cam)
        n_seen = sum(seen_in(pts, c, d, tol).astype(int) for c, d in zip(train_cams, train_depths))
        covered = float((depth > 0).mean())
        rows.append({"index": i, "reference_coverage": covered,
                     **{f"seen_by_{k}": float((n_seen >= k).mean()) if len(pts) else 0.0 for k in (1, 2, 3)}})
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "index"}
    mean["ceiling_2_views"] = float(np.mean([r["reference_coverage"] * r["seen_by_2"] for r in rows]))
    mean["ceiling_1_view"] = float(np.mean([r["reference_coverage"] * r["seen_by_1"] for r in rows]))
    return {"scene": name, "train": train, "test": test, "reference_views": ref_ids, "reference_points": len(cloud),
            "mvs_seconds": round(t_mvs, 1), "tolerance": tol, **mean, "views": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", nargs="+", default=["dtu_scan24", "fern", "fox"])
    ap.add_argument("--ref-every", type=int, default=2, help="every K-th camera of the dataset in the reference cloud")
    ap.add_argument("--tol", type=float, default=0.02, help="relative depth tolerance of the occlusion test")
    ap.add_argument("--mvs", nargs="*", default=[], help="MvsConf settings, e.g. max_image_size=320 num_planes=64")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "coverage_ceiling.json")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    conf = from_dict(MvsConf, parse_assignments(a.mvs))
    res = {"machine": platform.node(), "date": time.strftime("%Y-%m-%d"), "mvs": a.mvs, "ref_every": a.ref_every,
           "scenes": []}
    for name in a.scenes:
        r = run_scene(name, conf, a.ref_every, a.tol, a.device)
        res["scenes"].append(r)
        print(f"{name}: reference {r['reference_points']} points from {len(r['reference_views'])} views "
              f"({r['mvs_seconds']} s); held-out coverage {r['reference_coverage']:.3f}; of it seen by >= 1 / 2 / 3 "
              f"train views {r['seen_by_1']:.3f} / {r['seen_by_2']:.3f} / {r['seen_by_3']:.3f}; ceiling (>= 2) "
              f"{r['ceiling_2_views']:.3f}", flush=True)
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
