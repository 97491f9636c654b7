"""Which torch device a run uses."""

from __future__ import annotations

from .errors import FvgenError


def resolve_device(device: str | None) -> str:
    """``auto`` -> ``cuda`` when a CUDA GPU is visible, else ``cpu``; ``cpu``, ``cuda`` and
    ``cuda:N`` pass through, refused with one line when CUDA is asked for and absent."""
    import torch

    device = str(device or "auto")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cpu" and not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise FvgenError(f"unknown device {device!r}: use auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FvgenError(f"--device {device} was asked for but no CUDA GPU is available; use --device cpu")
    return device
