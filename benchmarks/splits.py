"""The standard sparse-view splits of the evaluation scenes in ``../shared/datasets``.

fern and dtu_scan24 use the splits the datasets' README gives; fox has none, so ours is defined
here once and used by every benchmark. Indices refer to the scene's ``cameras_opencv.json`` frame
order; :func:`split_files` turns them into image names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fvgen.core.cameras import Camera, axes_convergence, read_cameras_opencv_json

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
SCENES = ("fern", "dtu_scan24", "fox")
DTU_TEST = [1, 2, 9, 10, 11, 12, 14, 15, 23, 24, 26, 27, 29, 30, 31, 32, 33, 34, 35, 41, 42, 43,
            45, 46, 47]


def fox_split(cams: list[Camera]) -> tuple[list[int], list[int]]:
    """Train = frames nearest 20/50/80 % of the azimuth span; test = every 8th of the rest.

    The fox video rasters over the head (azimuth sweeps at three elevations), so the train frames
    are picked among the frames within 10 deg of the median elevation; azimuth and elevation are
    taken about world up (the mean camera -y axis: z in this recentred frame) around the point
    the optical axes converge on."""
    C = np.stack([c.center for c in cams])
    target, _ = axes_convergence(cams)
    up = -np.mean([c.c2w[:3, 1] for c in cams], 0)
    up /= np.linalg.norm(up)
    rel = C - target
    el = np.degrees(np.arcsin(rel @ up / np.linalg.norm(rel, axis=1)))
    v = rel - np.outer(rel @ up, up)
    e1 = (v / np.linalg.norm(v, axis=1, keepdims=True)).mean(0)  # middle of the arc: no wrap
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    az = np.degrees(np.arctan2(v @ e2, v @ e1))
    cand = np.flatnonzero(np.abs(el - np.median(el)) <= 10.0)
    lo, hi = az[cand].min(), az[cand].max()
    train = [int(cand[np.argmin(np.abs(az[cand] - (lo + q * (hi - lo))))]) for q in (0.2, 0.5, 0.8)]
    rest = [i for i in range(len(cams)) if i not in train]
    return train, rest[::8]



def split(name: str, cams: list[Camera] | None = None) -> tuple[list[int], list[int]]:
    """(train, test) indices into the scene's cameras_opencv.json frames."""
    if name == "fern":
        return [1, 10, 19], [0, 8, 16]
    if name == "dtu_scan24":
        return [25, 22, 28], list(DTU_TEST)
    if name == "fox":
        return fox_split(cams if cams is not None else read_cameras_opencv_json(DATASETS / "fox" / "cameras_opencv.json"))
    raise KeyError(name)


def split_files(name: str, root: Path = DATASETS) -> tuple[list[str], list[str]]:
    """(train, test) image file names of the split."""
    cams = read_cameras_opencv_json(Path(root) / name / "cameras_opencv.json")
    train, test = split(name, cams)
    base = lambda c: Path(c.name).name  # noqa: E731
    return [base(cams[i]) for i in train], [base(cams[i]) for i in test]
