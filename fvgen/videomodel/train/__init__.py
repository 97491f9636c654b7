"""Training the video models: :func:`.run.train_teacher` (resumable, DDP under torchrun),
with its step pieces (:mod:`.steps`), resume state (:mod:`.state`) and process group (:mod:`.distributed`)."""

from .run import train_teacher

__all__ = ["train_teacher"]
