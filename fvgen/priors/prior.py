"""The geometric prior every backend produces: cameras for the input views plus a dense,
coloured point cloud, all in the input cameras' world frame.

On disk (a priors stage folder): ``cameras.json`` (the ``cameras_opencv.json`` schema, see
:mod:`fvgen.core.cameras`), ``points.ply`` (binary PLY: x y z, red green blue as uint8, confidence),
``sparse.ply`` (SfM points, same layout, optional) and ``info.json`` (backend figures).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..core.cameras import Camera, read_cameras_opencv_json, write_cameras_opencv_json
from ..core.errors import FvgenError
from ..core.pointcloud import PointCloud


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
