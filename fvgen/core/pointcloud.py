"""A coloured point cloud with optional per-point confidence, and its binary PLY form
(x y z, red green blue as uint8, confidence)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FvgenError


@dataclass
class PointCloud:
    xyz: np.ndarray  # [N, 3] float32, world frame
    rgb: np.ndarray  # [N, 3] float32 in [0, 1]
    conf: np.ndarray | None = None  # [N] float32, higher is more certain

    def __post_init__(self):
        self.xyz = np.asarray(self.xyz, np.float32).reshape(-1, 3)
        self.rgb = np.asarray(self.rgb, np.float32).reshape(-1, 3)
        if self.conf is not None:
            self.conf = np.asarray(self.conf, np.float32).reshape(-1)
        if len(self.rgb) != len(self.xyz) or (self.conf is not None and len(self.conf) != len(self.xyz)):
            raise ValueError("PointCloud arrays differ in length")

    def __len__(self) -> int:
        return len(self.xyz)

    def subset(self, mask: np.ndarray) -> "PointCloud":
        return PointCloud(self.xyz[mask], self.rgb[mask], None if self.conf is None else self.conf[mask])

    def save_ply(self, path: Path) -> None:
        from plyfile import PlyData, PlyElement

        dtype = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
        if self.conf is not None:
            dtype.append(("confidence", "f4"))
        v = np.empty(len(self), dtype=dtype)
        v["x"], v["y"], v["z"] = self.xyz.T
        rgb8 = np.clip(np.round(self.rgb * 255), 0, 255).astype(np.uint8)
        v["red"], v["green"], v["blue"] = rgb8.T
        if self.conf is not None:
            v["confidence"] = self.conf
        PlyData([PlyElement.describe(v, "vertex")]).write(str(path))

    @staticmethod
    def load_ply(path: Path) -> "PointCloud":
        from plyfile import PlyData

        try:
            v = PlyData.read(str(path))["vertex"].data
        except Exception as e:
            raise FvgenError(f"cannot read point cloud {path}: {e}") from None
        xyz = np.stack([v["x"], v["y"], v["z"]], 1)
        names = v.dtype.names
        if "red" in names:
            rgb = np.stack([v["red"], v["green"], v["blue"]], 1).astype(np.float32) / 255.0
        else:
            rgb = np.full_like(xyz, 0.5)
        conf = v["confidence"] if "confidence" in names else None
        return PointCloud(xyz, rgb, conf)
