"""Per-scene sampling of the example builder (fvgen.videomodel.data.build): every scene gets the same
number of examples whatever its image count and however many of its draws fail; scenes shorter
than a clip walk their path there and back."""

from __future__ import annotations

import numpy as np
import pytest

from fvgen.core.errors import FvgenError
from fvgen.core import datasets
from fvgen.videomodel.data import examples
from fvgen.videomodel.data import scenes


def test_each_scene_gets_the_same_quota_despite_failures(tmp_path, monkeypatch):
    sizes = {"tiny_scene": 3, "short_scene": 9, "long_scene": 119}
    for s in sizes:
        (tmp_path / s).mkdir()
    calls = {"priors": 0}
    fail = np.random.default_rng(0)

    def fake_scene(d, max_size):
        n = sizes[d.name]
        return np.zeros((n, 8, 8, 3), np.float32), [None] * n, [f"{d.name}_{i}" for i in range(n)]

    def fake_priors(imgs, cams, names, sparse, conf, device, triangulate):
        calls["priors"] += 1
        assert len(set(sparse)) == len(sparse) >= 2 and all(0 <= i < len(imgs) for i in sparse)
        if fail.random() < 0.4:  # e.g. stereo finds no points
            raise FvgenError("the dense stereo found no points")
        return object()

    def fake_clip(priors, imgs, cams, names, sparse, clip, w, h, device, src):
        assert len(clip) == 4 and all(0 <= i < len(imgs) for i in clip) and clip[0] in sparse
        cov = float(fail.uniform(0.0, 0.3))  # some under min_coverage: skipped, redrawn
        z = np.zeros((4, h, w, 3), np.uint8)
        return {"ref": z[0], "warp": z, "mask": z[..., 0], "gt": z,
                "meta": {"source": src, "coverage": cov, "warp_psnr": 20.0}}

    monkeypatch.setattr(examples, "load_posed_scene", fake_scene)
    monkeypatch.setattr(examples, "make_priors", fake_priors)
    monkeypatch.setattr(examples, "clip_example", fake_clip)
    files = examples.build(tmp_path / "out", "tiny", [str(tmp_path / s) for s in sizes], per_scene=3,
                        clips_per_prior=2, min_coverage=0.05, retries=3, log=lambda m: None)
    counts = examples.examples_per_source(files)
    assert counts == {f"datasets-train/{s}": 6 for s in sizes}  # 119 images count as much as 3
    assert calls["priors"] > 9  # failed draws were redrawn


@pytest.mark.parametrize("n", [3, 5, 9, 15])
def test_scenes_shorter_than_a_clip_walk_there_and_back(n):
    rng = np.random.default_rng(n)
    for _ in range(20):
        sparse, clip = scenes.pick_views_short(n, 16, rng)
        assert len(clip) == 16 and clip[0] == sparse[0] and len(set(sparse)) == len(sparse) >= 2
        assert all(0 <= i < n for i in clip) and all(abs(a - b) == 1 for a, b in zip(clip, clip[1:]))
        assert set(clip) == set(range(n)) or n > 8  # up to 8 images, 16 frames walk all of them from any start
    assert scenes.bounce_path(1, 3, 7, -1) == [1, 0, 1, 2, 1, 0, 1]
    made: set = set()
    assert scenes.draw_new_views(n, 16, rng, made) is not None  # the builder's draw takes them too
    with pytest.raises(FvgenError):
        scenes.pick_views_short(2, 16, rng)


def test_watermark_rows_are_cut_with_the_camera():
    from fvgen.core.cameras import Camera

    img = np.arange(100 * 8 * 3, dtype=np.float32).reshape(100, 8, 3)
    cam = Camera([[50.0, 0, 3.5], [0, 50.0, 49.5], [0, 0, 1]], np.eye(4), 8, 100)
    out, c = scenes.crop_rows(img, cam, 0.12, 0.10)
    assert out.shape == (78, 8, 3) and c.height == 78 and np.array_equal(out[0], img[12])
    # a point seen at row 60 before is seen at row 48 after: the same pixel content
    p = np.array([0.0, (60 - 49.5) / 50.0, 1.0])
    assert np.isclose((c.K @ p)[1], 48.0)
    scene = datasets.TRAIN_ROOT / "pi3_valley"
    if (scene / "cameras_opencv.json").is_file():
        imgs, cams, _ = scenes.load_posed_scene(scene, max_size=160)
        assert imgs.shape[1] == cams[0].height == round(90 * 0.78)  # 160x90 less 12 % and 10 % of its rows


def test_mixed_shape_scenes_are_cropped_to_one_shape(tmp_path):
    """A portrait among landscapes (Internet photo collections): cropped to the median shape, each
    camera moved with its crop, so a 3D point lands on the same content before and after."""
    from PIL import Image

    from fvgen.core.cameras import Camera

    g = np.random.default_rng(0)
    shapes = [(120, 80), (120, 80), (60, 100)]  # (w, h): two landscapes and a portrait
    files, cams = [], []
    for k, (w, h) in enumerate(shapes):
        Image.fromarray(g.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"{k}.png")
        files.append(tmp_path / f"{k}.png")
        cams.append(Camera([[100.0, 0, (w - 1) / 2], [0, 100.0, (h - 1) / 2], [0, 0, 1]], np.eye(4), w, h))
    out = scenes.crop_to_one_shape(files, cams, 60)
    assert {im.shape for im, _ in out} == {(40, 60, 3)} and all((c.width, c.height) == (60, 40) for _, c in out)
    X = np.array([0.05, -0.02, 1.0])  # a point seen by the portrait camera: the same pixel before and after
    u0 = cams[2].K @ X / X[2]
    im, c = out[2]
    u1 = c.K @ X / X[2]
    s = 60 / 60  # the portrait is scaled to cover 60x40: width 60 -> scale 1, height 100 cropped to 40
    assert np.allclose(u1[:2], [u0[0] * s, u0[1] * s - 30])


def test_warp_resize_keeps_hole_edges_their_colour():
    """Seen pixels next to a hole keep their colour at the model size (a plain resize blends the
    hole's black into them, and a fill spread from them is too dark)."""
    frames = [np.full((40, 64, 3), 0.6, np.float32)]
    masks = [np.ones((40, 64), bool)]
    frames[0][:, 30:37] = 0.0  # a hole band, black as the renderer leaves it
    masks[0][:, 30:37] = False
    warp, mask = examples.warp_to_model_size(frames, masks, 32, 20)
    seen = mask[0] > 127
    assert seen.mean() < 0.95 and (~seen).any()
    assert np.abs(warp[0][seen].astype(int) - 153).max() <= 1  # 0.6 everywhere it counts as seen
    assert (warp[0][mask[0] == 0] == 0).all()  # holes stay black
