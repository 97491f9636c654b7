"""Training examples for the video models, made through the same code path as inference:
:mod:`.scenes` (posed scenes and view draws), :mod:`.examples` (priors -> warp -> example, the
builder), :mod:`.shards` (the on-disk codec and the in-memory bank), :mod:`.warpback` (single-photo
warp-back examples)."""

from .examples import (
    build,
    clip_example,
    examples_per_source,
    make_example,
    make_priors,
    pack,
    pack_photos,
    warp_psnr,
    warp_to_model_size,
)
from .scenes import (
           clip_from,
           draw_new_views,
           load_posed_scene,
           path_order,
           pick_views,
           procedural_scene,
)
from .shards import ExampleBank, example_files, load_example, save_example, to_tensors

__all__ = ["build", "clip_example", "examples_per_source", "make_example", "make_priors", "pack", "pack_photos",
           "warp_psnr", "warp_to_model_size", "clip_from", "draw_new_views",
           "load_posed_scene", "path_order", "pick_views", "procedural_scene", "ExampleBank", "example_files",
           "load_example", "save_example", "to_tensors"]
