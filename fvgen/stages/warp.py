"""Stage 2, warp: the dense prior rendered along a camera trajectory, with a validity mask.

Reads ``OUT/priors/``; writes ``OUT/warp/<traj>/``: ``rgb/*.png`` and ``mask/*.png`` per frame
(mask 255 where the point cloud covers the pixel, 0 in holes), ``rgb.mp4``, ``mask.mp4`` and the
per-frame cameras as ``transforms.json`` and ``cameras.json``. This is what the generation stage
turns into photo-real frames.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..core.cache import StageResult, cache_key, run_stage
from ..core.cameras import write_cameras_opencv_json, write_transforms_json
from ..core.trajectories import make_trajectory, trajectory_name
from ..core.video import write_mp4, write_pngs
from ..priors.prior import Priors
from ..render.warp import WarpConf, render_warp

VERSION = "1"


def main(conf: WarpConf, priors_result: StageResult, root: Path, device: str = "cpu",
         force: bool = False, progress=None) -> StageResult:
    name = trajectory_name(conf.traj)
    k = cache_key("warp", VERSION, conf, priors_result.token, traj=name)

    def compute(tmp: Path) -> dict:
        priors = Priors.load(priors_result.path)
        if conf.traj == "coverage":
            from ..render.coverage import plan_coverage

            cams = plan_coverage(priors, conf.frames, device=device)
        else:
            cams = make_trajectory(conf.traj, priors.cameras, conf.frames, priors.points.xyz)
        if conf.width and conf.height:
            cams = [c.scaled(conf.width, conf.height) for c in cams]
        frames, masks = render_warp(priors, cams, conf, device, progress)
        names = [c.name for c in cams]
        write_pngs(tmp / "rgb", frames, names)
        write_pngs(tmp / "mask", [m.astype(np.float32) for m in masks], names)
        write_mp4(tmp / "rgb.mp4", frames, conf.fps)
        write_mp4(tmp / "mask.mp4", [m.astype(np.float32) for m in masks], conf.fps)
        write_transforms_json([replace(c, name=f"{c.name}.png") for c in cams], tmp / "transforms.json",
                              file_prefix="rgb/", extra={"mask_prefix": "mask/"})
        write_cameras_opencv_json(cams, tmp / "cameras.json")
        cov = [float(m.mean()) for m in masks]
        return {"trajectory": name, "frames": len(cams), "coverage_mean": float(np.mean(cov)),
                "coverage_min": float(np.min(cov))}

    return run_stage(root, f"warp/{name}", k, compute, force)
