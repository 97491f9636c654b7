"""The priors stage's image loading: one decode per photo serves the working size and the SfM size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fvgen.core.images as images_module
import fvgen.stages.priors as priors_stage
from fvgen.core.images import ImagesConf, fit_size, resize_image
from fvgen.priors.backends import PriorsConf
from fvgen.priors.sfm import SfmConf


class _Captured(Exception):
    pass


def _photos(folder: Path) -> list[Path]:
    """Three photos of one aspect ratio at two resolutions (the smallest 400 x 300)."""
    rng = np.random.default_rng(0)
    files = []
    for i, (w, h) in enumerate(((400, 300), (800, 600), (400, 300))):
        files.append(folder / f"v{i}.png")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(files[-1])
    return files


@pytest.mark.parametrize("working, sfm_size, poses, sfm_expected", [
    (160, 320, False, (320, 240)),  # SfM at its own, larger size
    (160, 1024, False, (400, 300)),  # never above the smallest photo
    (320, 240, False, None),  # the working images are already as large: no second set
    (160, 320, True, None),  # known poses: no SfM
])
def test_one_decode_serves_both_sizes_with_unchanged_pixels(tmp_path, monkeypatch, working, sfm_size, poses,
                                                            sfm_expected):
    files = _photos(tmp_path)
    pose_file = None
    if poses:
        pose_file = tmp_path / "cameras_opencv.json"
        pose_file.write_text("{}")  # only hashed for the cache key: compute_priors is replaced below
    reads, seen = [], {}
    real_read = images_module.read_image
    monkeypatch.setattr(images_module, "read_image", lambda f: reads.append(Path(f).name) or real_read(f))

    def fake_compute_priors(images, conf, work, poses, device, progress=None, sfm_images=None):
        seen.update(images=images, sfm_images=sfm_images)
        raise _Captured

    monkeypatch.setattr(priors_stage, "compute_priors", fake_compute_priors)
    conf = PriorsConf(sfm=SfmConf(max_image_size=sfm_size))
    with pytest.raises(_Captured):
        priors_stage.main(ImagesConf(max_size=working), conf, priors_stage.PriorsInputs(tuple(files), pose_file),
                          tmp_path / "out")
    assert reads == [f.name for f in files]  # each photo decoded once

    def one_by_one(max_size):  # each file read and resized on its own, as the stage did before
        w, h = fit_size(400, 300, max_size)
        return np.stack([resize_image(real_read(f), w, h) for f in files])

    assert np.array_equal(seen["images"].images, one_by_one(working))
    if sfm_expected is None:
        assert seen["sfm_images"] is None
    else:
        assert seen["sfm_images"].size == sfm_expected
        assert np.array_equal(seen["sfm_images"].images, one_by_one(sfm_size))
