"""Single-photo warp-back examples (fvgen.videomodel.warpback): holes where the geometry says, exact
ground truth, the photo pool's schedule and the evaluation guard on photos."""

from __future__ import annotations

import numpy as np
import pytest

from fvgen.core.errors import FvgenError
from fvgen.core import datasets
from fvgen.videomodel.data import examples
from fvgen.videomodel.data import shards
from fvgen.videomodel.data import warpback as wb


def smooth_photo(h: int, w: int) -> np.ndarray:
    """A smooth colour image (a splat drawn one pixel off changes a pixel by < 0.02)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([0.2 + 0.6 * x / w, 0.3 + 0.5 * y / h, 0.5 + 0.2 * np.sin(x / 15.0) * np.cos(y / 13.0)], -1)


def test_fronto_parallel_plane_leaves_no_holes(one_thread):
    """A plane facing the camera hides nothing: an input camera moved sideways by less than the
    canvas border sees every point of the clip frame, and the warp back is the photo."""
    W, H, m, f, Z = 64, 40, 8, 50.0, 2.0
    canvas = smooth_photo(H + 2 * m, W + 2 * m)
    depth = np.full(canvas.shape[:2], Z, np.float32)
    cam = wb.input_camera(f, W + 2 * m, H + 2 * m, np.array([0.16, 0.0, 0.0]))  # 4 px of parallax
    clip = wb.warpback_clip(canvas, depth, f, [cam], [(0.0, 0.0, 0.0)] * 3, W, H)
    assert clip["mask"].all()
    assert np.allclose(clip["gt"][0], canvas[m:m + H, m:m + W], atol=1e-5)  # the ground truth is the photo itself
    assert np.abs(clip["warp"] - clip["gt"]).max() < 0.03  # the renderer's splats are the photo's pixels
    assert clip["points"] == (H + 2 * m) * (W + 2 * m) - (H + 2 * m) * 4  # only the 4 columns it moved past


@pytest.mark.parametrize("shift", [0.2, 0.3])
def test_depth_step_gives_a_hole_band_of_predictable_width(one_thread, shift):
    """A near surface on the left, a far one on the right: an input camera moved left sees the near
    surface slide over the far one by f * b * (1 / Z1 - 1 / Z2) pixels; that band of the far surface
    is hidden from it, so the warp back has a hole band of that width, right of the step, and none
    elsewhere."""
    W, H, m, f, Z1, Z2 = 96, 32, 16, 100.0, 1.0, 2.5
    canvas = smooth_photo(H + 2 * m, W + 2 * m)
    depth = np.full(canvas.shape[:2], Z2, np.float32)
    step = (W + 2 * m) // 2
    depth[:, :step] = Z1
    cam = wb.input_camera(f, W + 2 * m, H + 2 * m, np.array([-shift, 0.0, 0.0]))
    clip = wb.warpback_clip(canvas, depth, f, [cam], [(0.0, 0.0, 0.0)], W, H)
    holes = ~clip["mask"][0]
    expected = f * shift * (1 / Z1 - 1 / Z2)  # 12 and 18 px
    cols = np.flatnonzero(holes.any(0)) + m  # canvas columns with holes
    assert step <= cols.min() <= step + 2 and cols.max() <= step + expected + 2  # only at the step, far side
    widths = holes.sum(1)
    # measured: expected + 1 (the near surface's splats, 1.5 px, hide one more far column from the input)
    assert expected <= np.median(widths) <= expected + 2, (widths, expected)
    seen = clip["mask"][0]
    assert np.abs(clip["warp"][0] - clip["gt"][0])[seen].max() < 0.03  # exact where seen (up to a splat)


def test_turning_clip_ground_truth_is_the_rotated_photo(one_thread):
    """Clip frames turn about the photo's centre: their ground truth is the photo resampled by the
    rotation's homography (exact for any depth), and the warp agrees with it where it is seen."""
    W, H, m, f = 64, 40, 10, 60.0
    canvas = smooth_photo(H + 2 * m, W + 2 * m)
    rng = np.random.default_rng(0)
    conf = wb.WarpbackConf()
    depth = wb.synthetic_depth(canvas, "mixed", rng, conf)
    assert depth.min() >= 1.0 - 1e-5 and depth.max() <= conf.far[1] + 1e-3 and depth.std() > 0.05
    turns = [(0.0, 0.0, 0.0), (0.05, -0.03, 0.01), (0.1, -0.05, 0.0)]
    assert all(wb.frame_inside(t, f, W + 2 * m, H + 2 * m, W, H) for t in turns)
    cam = wb.input_camera(f, W + 2 * m, H + 2 * m, np.array([0.05, 0.02, 0.0]))
    clip = wb.warpback_clip(canvas, depth, f, [cam], turns, W, H)
    assert clip["gt"].shape == clip["warp"].shape == (3, H, W, 3) and clip["mask"].shape == (3, H, W)
    assert not np.allclose(clip["gt"][0], clip["gt"][2])  # the view moves
    for g, w, s in zip(clip["gt"], clip["warp"], clip["mask"]):
        assert s.mean() > 0.8 and np.abs(w - g)[s].mean() < 0.02
    with pytest.raises(FvgenError, match="beyond"):
        wb.warpback_clip(canvas, depth, f, [cam], [(0.5, 0.0, 0.0)], W, H)


def test_input_window_limits_what_the_prior_holds(one_thread):
    """An input camera that sees only part of the canvas leaves the rest of the frame a hole, as a
    novel view reaches beyond sparse input views."""
    W, H, m, f = 64, 40, 8, 50.0
    canvas = smooth_photo(H + 2 * m, W + 2 * m)
    depth = np.full(canvas.shape[:2], 2.0, np.float32)
    cam = wb.input_camera(f, W + 2 * m, H + 2 * m, np.zeros(3), view=0.5, x0=0.0, y0=0.0)  # the top-left quarter
    clip = wb.warpback_clip(canvas, depth, f, [cam], [(0.0, 0.0, 0.0)], W, H)
    seen = clip["mask"][0]
    Wc, Hc = W + 2 * m, H + 2 * m
    wi, hi = round(0.5 * Wc), round(0.5 * Hc)
    assert seen[:hi - m - 1, :wi - m - 1].all() and not seen[hi - m + 1:].any() and not seen[:, wi - m + 1:].any()


def test_photo_example_fields_match_multiview_examples(tmp_path, one_thread):
    photos = sorted((datasets.PHOTOS_ROOT / "bsd100").glob("*.jpg"))[:1]
    if not photos:
        pytest.skip("shared/photos/bsd100 not present")
    ex = wb.photo_example(photos[0], 64, 32, 4, np.random.default_rng(3), wb.WarpbackConf(max_size=96))
    assert ex["gt"].shape == ex["warp"].shape == (4, 32, 64, 3) and ex["mask"].shape == (4, 32, 64)
    assert ex["ref"].shape == (32, 64, 3) and ex["gt"].dtype == np.uint8
    meta = ex["meta"]
    assert meta["source"] == f"photos/bsd100/{photos[0].name}" and len(meta["cameras"]) == 4
    assert 0.0 < meta["coverage"] < 1.0 and meta["warp_psnr"] > 15
    shards.save_example(tmp_path / "p.npz", ex)  # the same shards as multi-view examples
    back = shards.load_example(tmp_path / "p.npz")
    assert np.array_equal(back["mask"], ex["mask"]) and back["meta"]["source"] == meta["source"]
    bank = shards.ExampleBank([tmp_path], 4)
    assert len(bank) == 1 and bank.batch([0])["gt"].shape == (1, 4, 3, 32, 64)


def test_photo_schedule_takes_each_set_equally(tmp_path):
    from PIL import Image

    for name, n in (("big", 12), ("small", 2), ("mid", 5)):
        (tmp_path / name).mkdir()
        for i in range(n):
            Image.fromarray(np.full((8, 8, 3), i * 10, np.uint8)).save(tmp_path / name / f"{i}.jpg")
    files = wb.photo_schedule(30, root=tmp_path, seed=1)
    counts = {s: sum(f.parent.name == s for f in files) for s in ("big", "small", "mid")}
    assert counts == {"big": 10, "small": 10, "mid": 10}
    big = [f for f in files if f.parent.name == "big"]
    assert len(set(big)) == 10  # no photo of a set repeats before the set is used up
    assert wb.photo_source(files[0]) == f"photos/{files[0].parent.name}/{files[0].name}"


def test_eval_guard_covers_photos(tmp_path):
    """A photo set or photo named after an evaluation scene, and an evaluation image hidden among the
    photos (resized and re-encoded: a byte hash cannot see it), are refused; the real photos pass."""
    from PIL import Image

    (tmp_path / "fern").mkdir()
    with pytest.raises(FvgenError, match="evaluation scene"):
        wb.photo_sets(["fern"], tmp_path)
    evals = sorted(p for p in datasets.EVAL_ROOT.rglob("*") if p.suffix.lower() in (".jpg", ".png", ".jpeg"))
    if not evals:
        pytest.skip("shared/datasets not present")
    hidden = tmp_path / "myset" / "holiday.jpg"
    hidden.parent.mkdir()
    with Image.open(evals[0]) as im:
        im.convert("RGB").resize((im.width // 3, im.height // 3)).save(hidden, quality=80)
    with pytest.raises(FvgenError, match="evaluation scene image"):
        wb.load_photo_crop(hidden, 64, 40, np.random.default_rng(0))
    with pytest.raises(FvgenError, match="evaluation scene image"):  # aborts the build, not skipped
        examples.build(tmp_path / "out", "tiny", scenes=[], per_scene=0, photos=1, photo_sets=[str(hidden.parent)])
    assert not (tmp_path / "out").exists()
    if datasets.PHOTOS_ROOT.is_dir():  # every shared photo passes (no false alarm)
        for f in sorted(datasets.PHOTOS_ROOT.rglob("*.jpg")):
            assert datasets.looks_like_eval_image(f) is None, f
