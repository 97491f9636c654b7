"""``fvgen render``: a splat scene rendered along a trajectory into an mp4."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .cameras import read_cameras_opencv_json, read_transforms_json
from .errors import FvgenError
from .fit import render_splats
from .pipeline import resolve_device
from .progress import progress_bar
from .splats import load_ply
from .trajectories import make_trajectory
from .video import write_mp4


def _reference_cameras(scene: Path, cameras: Path | None):
    if cameras is None:
        for cand in (scene.parent / "cameras" / "transforms.json", scene.parent / "transforms.json"):
            if cand.exists():
                cameras = cand
                break
        else:
            raise FvgenError(f"no cameras for {scene}: pass --cameras transforms.json (fvgen writes it to "
                             "OUT/cameras/transforms.json)")
    if not Path(cameras).is_file():
        raise FvgenError(f"cameras file not found: {cameras}")
    try:
        import json

        frames = json.loads(Path(cameras).read_text())["frames"]
        return read_cameras_opencv_json(cameras) if frames and "c2w" in frames[0] else read_transforms_json(cameras)
    except FvgenError:
        raise
    except Exception as e:
        raise FvgenError(f"{cameras}: not a transforms.json or cameras_opencv.json ({e})") from None


def render_scene(scene: Path, traj: str | None, cameras: Path | None, out: Path | None, frames: int = 60,
                 fps: int = 20, device: str = "auto") -> Path:
    scene = Path(scene)
    device = resolve_device(device)
    splats = load_ply(scene, device=device)
    ref = _reference_cameras(scene, cameras)
    if traj is None:
        traj = "orbit" if cameras is None else "given"
    cams = ref if traj == "given" else make_trajectory(traj, ref, frames, splats["means"].cpu().numpy())
    name = traj if traj in ("orbit", "spiral", "interp", "given") else Path(traj).stem
    out = Path(out) if out else scene.with_name(f"{scene.stem}_{name}.mp4")
    if out.suffix.lower() != ".mp4":
        raise FvgenError(f"--out must end in .mp4, got {out}")
    imgs = []
    with progress_bar(f"render {name}", len(cams)) as update, torch.no_grad():
        for i, c in enumerate(cams):
            img = render_splats(splats, [c.scaled(cams[0].width, cams[0].height)])[0][0]
            imgs.append(img.clamp(0, 1).cpu().numpy().astype(np.float32))
            update(i + 1)
    write_mp4(out, imgs, fps)
    return out
