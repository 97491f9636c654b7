"""The geometric prior every backend produces: cameras for the input views plus a dense,
coloured point cloud, all in the input cameras' world frame.

On disk (a priors stage folder): ``cameras.json`` (the ``cameras_opencv.json`` schema, see
:mod:`fvgen.cameras`), ``points.ply`` (binary PLY: x y z, red green blue as uint8, confidence),
``sparse.ply`` (SfM points, same layout, optional) and ``info.json`` (backend figures).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cameras import Camera, read_cameras_opencv_json, write_cameras_opencv_json
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


@dataclass
class Priors:
    cameras: list[Camera]  # one per input image, same order as the images
    points: PointCloud  # dense cloud used by warp and to initialise the fit
    sparse: PointCloud | None = None  # SfM points (when the backend has them)
    info: dict = field(default_factory=dict)  # backend name and key figures

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_cameras_opencv_json(self.cameras, folder / "cameras.json")
        self.points.save_ply(folder / "points.ply")
        if self.sparse is not None and len(self.sparse):
            self.sparse.save_ply(folder / "sparse.ply")
        (folder / "info.json").write_text(json.dumps(self.info, indent=1, default=float))

    @staticmethod
    def load(folder: Path) -> "Priors":
        folder = Path(folder)
        if not (folder / "cameras.json").exists():
            raise FvgenError(f"no priors in {folder}: run `fvgen reconstruct` first")
        sparse = PointCloud.load_ply(folder / "sparse.ply") if (folder / "sparse.ply").exists() else None
        info = json.loads((folder / "info.json").read_text()) if (folder / "info.json").exists() else {}
        return Priors(read_cameras_opencv_json(folder / "cameras.json"),
                      PointCloud.load_ply(folder / "points.ply"), sparse, info)
