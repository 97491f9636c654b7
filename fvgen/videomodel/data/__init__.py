"""Training examples for the video models, made through the same code path as inference:
:mod:`.scenes` (posed scenes and view draws), :mod:`.examples` (priors -> warp -> example, the
builder), :mod:`.shards` (the on-disk codec and the in-memory bank)."""

from .examples import build, clip_example, make_example, make_priors, pack, warp_psnr
from .scenes import (
           clip_from,
           draw_new_views,
           load_posed_scene,
           path_order,
           pick_views,
           procedural_scene,
)
from .shards import ExampleBank, example_files, load_example, save_example, to_tensors

__all__ = ["build", "clip_example", "make_example", "make_priors", "pack", "warp_psnr", "clip_from", "draw_new_views",
           "load_posed_scene", "path_order", "pick_views", "procedural_scene", "ExampleBank", "example_files",
           "load_example", "save_example", "to_tensors"]
