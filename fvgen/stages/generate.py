"""Stage 3, generate: the teacher turns the warp stage's point-cloud renders into photo-real frames.

Reads ``OUT/warp/<traj>/`` (rgb/, mask/, cameras.json) and the input views of ``OUT/priors/``;
writes ``OUT/generate/<traj>/``: ``rgb/*.png`` per frame, ``rgb.mp4``, ``compare.mp4`` (warp |
generated), ``cameras.json`` and ``transforms.json`` (the warp's cameras). The cache key is the
warp key + the model folder's content hash + sampling settings (steps, cfg, rescale, seed, strength).

There are no trained teacher weights in fvgen yet (issue 3): without ``--model DIR`` this stage
refuses with one line instead of sampling an untrained network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from ..cache import StageResult, cache_key, run_stage
from ..cameras import Camera, read_cameras_opencv_json, write_cameras_opencv_json, write_transforms_json
from ..errors import FvgenError

VERSION = "1"


@dataclass(frozen=True)
class GenerateConf:
    steps: int = 50
    cfg: float = 3.0  # classifier-free guidance scale (1: off)
    guidance_rescale: float = 0.7
    seed: int = 0
    fps: int = 10
    strength: float = 1.0  # 1: from pure noise; < 1: from the noised fill of the warp (SDEdit), fewer steps


def nearest_view(cam: Camera, inputs: list[Camera]) -> int:
    """Index of the input camera closest to ``cam`` (centre distance over the inputs' spread plus
    viewing-direction angle)."""
    cs = np.stack([c.center for c in inputs])
    scale = max(float(np.linalg.norm(cs - cs.mean(0), axis=1).mean()), 1e-6)
    d = np.linalg.norm(cs - cam.center, axis=1) / scale
    ang = np.array([np.arccos(np.clip(c.c2w[:3, 2] @ cam.c2w[:3, 2], -1, 1)) for c in inputs])
    return int(np.argmin(d + ang))


def _read_warp(folder: Path) -> tuple[list[Camera], list[np.ndarray], list[np.ndarray]]:
    from ..images import read_image

    cams = read_cameras_opencv_json(folder / "cameras.json")
    frames, masks = [], []
    for c in cams:
        stem = Path(c.name).stem
        frames.append(read_image(folder / "rgb" / f"{stem}.png"))
        m = read_image(folder / "mask" / f"{stem}.png")
        masks.append(m.mean(-1) if m.ndim == 3 else m)
    return cams, frames, [(m > 0.5).astype(np.float32) for m in masks]


def main(conf: GenerateConf, model_dir: Path, warp_result: StageResult, priors_result: StageResult, root: Path,
         device: str = "cpu", force: bool = False, progress=None) -> StageResult:
    from ..teacher.model import weights_hash

    name = Path(warp_result.path).name
    k = cache_key("generate", VERSION, conf, warp_result.token, priors_result.token, weights=weights_hash(model_dir))

    def compute(tmp: Path) -> dict:
        import torch

        from ..stages.priors import load as load_priors
        from ..teacher.model import TeacherModel
        from ..teacher.sample import generate_clip
        from ..video import write_mp4, write_pngs

        cams, frames, masks = _read_warp(Path(warp_result.path))
        pri, images = load_priors(Path(priors_result.path))
        inputs = [c.scaled(frames[0].shape[1], frames[0].shape[0]) for c in pri.cameras]
        model = TeacherModel.load(model_dir, device, torch.float32)
        refs = lambda i: _resize(images[nearest_view(cams[i], inputs)], frames[0].shape[1], frames[0].shape[0])  # noqa: E731
        out = generate_clip(model, refs, frames, masks, conf.steps, conf.cfg, conf.guidance_rescale, conf.seed,
                            progress, strength=conf.strength)
        names = [Path(c.name).stem for c in cams]
        write_pngs(tmp / "rgb", out, names)
        write_mp4(tmp / "rgb.mp4", out, conf.fps)
        write_mp4(tmp / "compare.mp4", [np.concatenate([w, o], 1) for w, o in zip(frames, out)], conf.fps)
        write_cameras_opencv_json(cams, tmp / "cameras.json")
        write_transforms_json(cams, tmp / "transforms.json", file_prefix="rgb/")
        info = json.loads((Path(model_dir) / "teacher.json").read_text())
        return {"trajectory": name, "frames": len(out), "steps": conf.steps, "cfg": conf.cfg, "strength": conf.strength,
                "model": str(model_dir), "model_preset": info.get("preset", {}).get("name", "?"),
                "model_unet_steps": info.get("unet_steps", 0)}

    return run_stage(root, f"generate/{name}", k, compute, force)


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    from ..images import resize_image

    return img if img.shape[:2] == (h, w) else resize_image(img, w, h)


def generate(out: Path, conf, traj: str, frames: int | None, model: str | Path | None, steps: int | None = None,
             device: str = "auto", force: Iterable[str] = (), cfg: float | None = None,
             gen_conf: GenerateConf | None = None, strength: float | None = None) -> StageResult:
    """``fvgen generate``: warp (cached) then generate along ``traj``; returns the generate StageResult.

    ``conf`` is the PipelineConf (its warp settings are used); ``model`` a teacher model folder
    (None: the shipped weights, which do not exist yet -> FvgenError); ``force`` may hold
    ``warp``, ``generate`` or ``all``."""
    from ..cache import run_lock, write_run_json
    from ..pipeline import check_force, command_line, resolve_device, run_warp
    from ..progress import progress_bar
    from ..teacher.model import resolve_model

    model_dir = resolve_model(model)  # refuse before any work
    device = resolve_device(device)
    force = check_force(force, ("warp", "generate"))
    g = gen_conf or GenerateConf(fps=conf.warp.fps)
    if steps is not None:
        if steps < 1:
            raise FvgenError("--steps must be at least 1")
        g = replace(g, steps=int(steps))
    if cfg is not None:
        g = replace(g, cfg=float(cfg))
    if strength is not None:
        from ..teacher.sample import run_steps

        try:
            run_steps(g.steps, strength)  # refuse before any work
        except ValueError as e:
            raise FvgenError(f"--{e}") from None
        g = replace(g, strength=float(strength))
    out = Path(out)
    with run_lock(out):
        pri, w = run_warp(out, conf, traj, frames, device, "warp" in force)
        from ..teacher.sample import run_steps, windows

        meta = json.loads((model_dir / "teacher.json").read_text())
        total = run_steps(g.steps, g.strength) * len(windows(w.figures["frames"], int(meta["preset"]["frames"])))
        with progress_bar(f"generate {w.path.name}", total) as update:
            res = main(g, model_dir, w, pri, out, device, force="generate" in force, progress=update)
        write_run_json(out, command_line(), [pri, w, res], {"preset": conf.name, "device": device})
    return res
