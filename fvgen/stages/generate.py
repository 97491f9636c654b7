"""Stage 3, generate: a generator (:mod:`fvgen.videomodel.generators`) turns the warp stage's
point-cloud renders into novel views, each with a per-pixel confidence for the fit.

Reads ``OUT/warp/<traj>/`` (rgb/, mask/, cameras.json) and the input views of ``OUT/priors/``;
writes ``OUT/generate/<traj>/``: ``rgb/*.png`` per frame, ``mask/*.png`` (the confidence, 0-255),
``rgb.mp4``, ``compare.mp4`` (warp | generated), ``cameras.json`` and ``transforms.json`` (the warp's
cameras). The cache key is the warp's and priors' tokens + the generator's key (name, settings,
model weights hash) + the confidence settings (+ ``keep_seen`` for generators that redraw seen
pixels: with it, each frame keeps the warp's colour wherever the point cloud saw the pixel).

Before generating, the generator gets the input views (:meth:`Generator.prepare`): a model folder
with ``generate.adapt.steps > 0`` fine-tunes a copy of itself on them (test-time adaptation,
:mod:`fvgen.videomodel.adapt`), and the figures record its ``adapt`` report (seconds, leave-one-out
loss before and after). The adaptation settings enter the key through the generator's key, and
only where they change the output: a generator that does not adapt (``fill``, or a model with
``steps = 0``) keeps the key it had before adaptation existed; one that adapts also keys on the
dense-stereo settings its leave-one-out priors are made with.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from ..core.cache import StageResult, cache_key, run_stage
from ..core.cameras import write_cameras_opencv_json, write_transforms_json
from ..priors.backends import PriorsConf
from ..videomodel.generators import GenerateConf, GenerationInputs, Generator, nearest_view, view_confidence

VERSION = "2"


def keeps_seen(conf: GenerateConf, generator: Generator) -> bool:
    """Whether the stage puts the warp's colour back on the seen pixels of ``generator``'s frames."""
    return conf.keep_seen and generator.regenerates_seen


def key(conf: GenerateConf, generator: Generator, warp_result: StageResult, priors_result: StageResult,
        priors_conf: PriorsConf | None = None) -> str:
    """The stage's cache key (see the module docstring for what enters it)."""
    # the generator's key carries the adaptation settings where they matter; in ``settings`` they would
    # change the key of every generator, fill's too
    # (cuda_graph changes only the rounding; keep_seen only the output of generators that redraw seen pixels)
    settings = {k: v for k, v in asdict(conf).items()
                if k not in ("generator", "views", "trajectory", "adapt", "cuda_graph", "keep_seen")}
    extra = {}
    if keeps_seen(conf, generator):
        extra["keep_seen"] = True
    if generator.adapts:
        extra["adapt_mvs"] = asdict((priors_conf or PriorsConf()).mvs)
    return cache_key("generate", VERSION, settings, warp_result.token, priors_result.token, generator=generator.key,
                     **extra)


def main(conf: GenerateConf, generator: Generator, warp_result: StageResult, priors_result: StageResult,
         root: Path, device: str = "cpu", force: bool = False, progress=None,
         priors_conf: PriorsConf | None = None) -> StageResult:
    """``priors_conf``: the priors settings (the dense stereo of an adapting generator's leave-one-out priors)."""
    name = Path(warp_result.path).name
    k = key(conf, generator, warp_result, priors_result, priors_conf)

    def compute(tmp: Path) -> dict:
        from ..core.images import resize_image
        from ..core.video import write_mp4, write_pngs
        from ..render.warp import read_view_folder
        from .priors import load as load_priors

        cams, frames, masks = read_view_folder(Path(warp_result.path))
        pri, images = load_priors(Path(priors_result.path))
        H, W = frames[0].shape[:2]
        inputs = [c.scaled(W, H) for c in pri.cameras]

        def reference(i: int) -> np.ndarray:
            img = images[nearest_view(cams[i], inputs)]
            return img if img.shape[:2] == (H, W) else resize_image(img, W, H)

        adapted = generator.prepare(GenerationInputs(images, pri.cameras, pri, priors_conf), progress)
        out = generator(frames, masks, cams, reference, progress)
        if keeps_seen(conf, generator):
            out = [np.where(np.asarray(m)[..., None] > 0.5, f, o).astype(np.float32) for f, m, o in zip(frames, masks, out)]
        confidence = view_confidence(masks, cams, inputs, conf)
        names = [Path(c.name).stem for c in cams]
        write_pngs(tmp / "rgb", out, names)
        write_pngs(tmp / "mask", confidence, names)
        write_mp4(tmp / "rgb.mp4", out, conf.fps)
        write_mp4(tmp / "compare.mp4", [np.concatenate([w, o], 1) for w, o in zip(frames, out)], conf.fps)
        write_cameras_opencv_json(cams, tmp / "cameras.json")
        write_transforms_json([replace(c, name=f"{n}.png") for c, n in zip(cams, names)], tmp / "transforms.json", file_prefix="rgb/",
                              extra={"mask_prefix": "mask/"})
        return {"trajectory": name, "generator": generator.name, "frames": len(out),
                "coverage_mean": float(np.mean([np.mean(m > 0.5) for m in masks])),
                "confidence_mean": float(np.mean([c.mean() for c in confidence])),
                **({"adapt": adapted} if adapted is not None else {})}

    return run_stage(root, f"generate/{name}", k, compute, force)
