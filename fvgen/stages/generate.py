"""Stage 3, generate: the teacher turns the warp stage's point-cloud renders into photo-real frames.

Reads ``OUT/warp/<traj>/`` (rgb/, mask/, cameras.json) and the input views of ``OUT/priors/``;
writes ``OUT/generate/<traj>/``: ``rgb/*.png`` per frame, ``rgb.mp4``, ``compare.mp4`` (warp |
generated), ``cameras.json`` and ``transforms.json`` (the warp's cameras). The cache key is the
warp key + the model folder's content hash + sampling settings (steps, cfg, rescale, seed, strength).

There are no trained teacher weights in fvgen yet (issue 3): without ``--model DIR`` this stage
refuses with one line instead of sampling an untrained network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.cache import StageResult, cache_key, run_stage
from ..core.cameras import Camera, write_cameras_opencv_json, write_transforms_json

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


def main(conf: GenerateConf, model_dir: Path, warp_result: StageResult, priors_result: StageResult, root: Path,
         device: str = "cpu", force: bool = False, progress=None) -> StageResult:
    from ..videomodel.model import weights_hash

    name = Path(warp_result.path).name
    k = cache_key("generate", VERSION, conf, warp_result.token, priors_result.token, weights=weights_hash(model_dir))

    def compute(tmp: Path) -> dict:
        import torch

        from ..core.video import write_mp4, write_pngs
        from ..render.warp import read_view_folder
        from ..videomodel.model import TeacherModel
        from ..videomodel.sample import generate_clip
        from .priors import load as load_priors

        cams, frames, masks = read_view_folder(Path(warp_result.path))
        masks = [(m > 0.5).astype(np.float32) for m in masks]
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
        return {"trajectory": name, "frames": len(out), "steps": conf.steps, "cfg": conf.cfg, "strength": conf.strength,
                "model": str(model_dir), "model_preset": model.preset.name,
                "model_unet_steps": model.info.get("unet_steps", 0)}

    return run_stage(root, f"generate/{name}", k, compute, force)


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    from ..core.images import resize_image

    return img if img.shape[:2] == (h, w) else resize_image(img, w, h)
