"""Generators, confidence weights and the coverage trajectory on small synthetic scenes."""

import numpy as np
import pytest

from fvgen.core.cameras import Camera, look_at
from fvgen.core.errors import FvgenError
from fvgen.core.pointcloud import PointCloud
from fvgen.priors.prior import Priors
from fvgen.videomodel.generators import FillGenerator, GenerateConf, make_generator, view_confidence


def scene(n_points=6000, seed=0) -> Priors:
    """A textured box-corner room seen by 3 cameras on an arc."""
    rng = np.random.default_rng(seed)
    floor = np.c_[rng.uniform(-2, 2, n_points // 3), np.full(n_points // 3, 1.0), rng.uniform(0, 4, n_points // 3)]
    back = np.c_[rng.uniform(-2, 2, n_points // 3), rng.uniform(-2, 1, n_points // 3), np.full(n_points // 3, 4.0)]
    box = np.c_[rng.uniform(-0.5, 0.5, n_points // 3), rng.uniform(0, 1, n_points // 3), rng.uniform(1.5, 2.5, n_points // 3)]
    xyz = np.concatenate([floor, back, box])
    K = [[80, 0, 63.5], [0, 80, 47.5], [0, 0, 1]]
    cams = [Camera(K, look_at(np.array([x, -0.3, -2.0]), np.array([0.0, 0.3, 2.0]), np.array([0.0, -1.0, 0.0])),
                   128, 96, name=f"v{i}.png") for i, x in enumerate((-0.8, 0.0, 0.8))]
    return Priors(cams, PointCloud(xyz, rng.random(xyz.shape)))


def test_coverage_plan_gives_valid_cameras_and_more_coverage_with_budget():
    from fvgen.render.coverage import plan_coverage, points_covered

    pri = scene()
    small, large = plan_coverage(pri, 8, segment=4), plan_coverage(pri, 24, segment=4)
    assert len(small) == 8 and len(large) == 24
    for c in large:
        assert np.isfinite(c.c2w).all() and abs(np.linalg.det(c.c2w[:3, :3]) - 1) < 1e-6
        assert (c.width, c.height) == (128, 96)
    assert len({c.name for c in large}) == 24
    assert points_covered(pri, large) > points_covered(pri, small) > 0.2


def test_confidence_trusts_seen_pixels_and_views_near_the_photos():
    pri = scene()
    conf = GenerateConf(hole_confidence=0.25, distance_falloff=1.0)
    mask = np.zeros((96, 128), np.float32)
    mask[:, :64] = 1.0
    near = pri.cameras[1]
    far = Camera(near.K, look_at(np.array([0.0, -0.3, -6.0]), np.array([0.0, 0.3, 2.0]), np.array([0.0, -1.0, 0.0])),
                 128, 96)
    c_near, c_far = view_confidence([mask, mask], [near, far], pri.cameras, conf)
    assert c_near[0, 0] == pytest.approx(1.0) and c_near[0, -1] == pytest.approx(0.25)
    assert c_far[0, 0] < 0.5 * c_near[0, 0] and c_far[0, -1] < c_near[0, -1]
    flat = view_confidence([mask], [near], pri.cameras, GenerateConf(distance_falloff=0.0))[0]
    assert flat.max() == 1.0


def test_views_the_warp_barely_covers_get_no_confidence():
    pri = scene()
    conf = GenerateConf(hole_confidence=0.3, distance_falloff=0.0, min_coverage=0.2)
    sparse, half = np.zeros((96, 128), np.float32), np.zeros((96, 128), np.float32)
    sparse[:10] = 1.0  # about 10 % covered
    half[:, :64] = 1.0
    c_sparse, c_half = view_confidence([sparse, half], [pri.cameras[0]] * 2, pri.cameras, conf)
    assert c_sparse.max() == 0.0
    assert c_half[0, 0] == pytest.approx(1.0) and c_half[0, -1] == pytest.approx(0.3)
    kept = view_confidence([sparse], [pri.cameras[0]], pri.cameras, GenerateConf(distance_falloff=0.0, min_coverage=0.0))[0]
    assert kept.min() > 0.0  # 0 keeps every view


def test_fill_generator_keeps_seen_pixels_and_fills_holes():
    frame = np.zeros((32, 32, 3), np.float32)
    frame[:, :16] = [0.2, 0.4, 0.6]
    mask = np.zeros((32, 32), np.float32)
    mask[:, :16] = 1.0
    (out,) = FillGenerator("cpu", iters=50)([frame], [mask], [None], lambda i: frame)
    assert np.allclose(out[:, :16], frame[:, :16])
    assert np.allclose(out[:, 16:], [0.2, 0.4, 0.6], atol=1e-3)  # a flat colour fills flat


def test_generator_names_are_checked_before_any_work(tmp_path):
    assert make_generator(GenerateConf(generator="none")) is None
    assert isinstance(make_generator(GenerateConf(generator="fill")), FillGenerator)
    for name, msg in (("bogus", "unknown generator"), ("teacher", "no trained teacher"), ("viewcrafter", "ViewCrafter_25.ckpt"),
                      (str(tmp_path), "not a teacher model folder")):
        with pytest.raises(FvgenError, match=msg):
            make_generator(GenerateConf(generator=name))
    with pytest.raises(FvgenError, match="checkpoint not found"):
        make_generator(GenerateConf(generator="viewcrafter", checkpoint=str(tmp_path / "nope.ckpt")))
    ckpt = tmp_path / "ViewCrafter_16.ckpt"
    ckpt.write_bytes(b"x")
    assert make_generator(GenerateConf(generator="viewcrafter", checkpoint=str(ckpt))).key.startswith("viewcrafter-")
    for bad in ({"views": 0}, {"hole_confidence": 2.0}, {"strength": 0.0}, {"steps": 0}, {"min_coverage": -0.1},
                {"min_coverage": 1.5}):
        with pytest.raises(FvgenError):
            GenerateConf(**bad)


def test_shipped_student_samples_four_steps_and_keeps_the_warp_where_seen():
    """``--generator student`` loads the weights that ship in the package (trained, 4 steps, no CFG)
    and turns a half-seen warp into frames: in range, close to the warp where the warp saw (before the
    generate stage's ``keep_seen`` puts it back), and no flat colour in the holes."""
    import json

    import torch

    from fvgen.videomodel.model import WEIGHTS_DIR

    folder = WEIGHTS_DIR / "student"
    info = json.loads((folder / "fvgen_model.json").read_text())["provenance"]
    assert info["trained"] is True and info["student"]["steps"] == 4 and info["student"]["cfg"] == 1.0
    for shard in (folder / "unet").glob("*.safetensors"):
        assert shard.stat().st_size <= 15 * 2**20, shard
    gen = make_generator(GenerateConf(generator="student"))
    assert (gen.conf.steps, gen.conf.cfg, gen.name) == (4, 1.0, "student")
    torch.manual_seed(0)
    yy, xx = np.mgrid[0:96, 0:128] / 128.0
    photo = np.stack([xx, yy, 0.5 + 0.3 * np.sin(6 * xx)], -1).astype(np.float32)
    masks = [np.zeros((96, 128), np.float32) for _ in range(4)]
    for m in masks:
        m[:, :64] = 1.0
    frames = [photo * m[..., None] for m in masks]
    out = gen(frames, masks, [None] * 4, lambda i: photo)
    assert len(out) == 4 and all(o.shape == (96, 128, 3) and np.isfinite(o).all() for o in out)
    assert all(0.0 <= o.min() and o.max() <= 1.0 for o in out)
    clip = np.stack(out)
    assert np.abs(clip[:, :, :64] - photo[:, :64]).mean() < 0.05  # measured 0.015
    assert clip[:, :, 72:].std() > 0.03  # measured 0.10: generated, not one flat colour


def test_every_preset_names_a_generator_that_can_run_here():
    """A preset's generator must exist in the package (the `default` preset's is the shipped student):
    a preset naming weights that do not ship would refuse every `reconstruct` on a GPU."""
    from fvgen.presets import load_preset, preset_names

    for name in preset_names():
        conf = load_preset(name).generate
        if conf.generator == "viewcrafter":  # needs the user's checkpoint, by design
            continue
        make_generator(conf)


def test_the_shipped_student_says_its_licence_once_before_any_work(capsys):
    """Its training data are partly non-commercial: a run that generates with it says so on stderr;
    other generators say nothing."""
    from fvgen.pipeline import checked_generator
    from fvgen.presets import PipelineConf

    checked_generator(PipelineConf(generate=GenerateConf(generator="student")), "cpu")
    err = capsys.readouterr().err
    assert err.count("note:") == 1 and "non-commercial" in err and "--generator none" in err
    checked_generator(PipelineConf(generate=GenerateConf(generator="fill")), "cpu")
    assert capsys.readouterr().err == ""
