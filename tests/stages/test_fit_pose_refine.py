"""The fit stage with fit.pose_refine: it writes the cameras it fitted to (fit/cameras.json), the
per-camera change in its figures, renders at the refined cameras, and the export's camera files
carry the refined cameras; without refinement fit/cameras.json is the priors' cameras."""

import dataclasses
import json

import numpy as np
import torch

from fvgen.core.cache import StageResult
from fvgen.core.cameras import read_cameras_opencv_json, read_transforms_json
from fvgen.core.images import save_image
from fvgen.fit import FitConf
from fvgen.priors.prior import Priors
from fvgen.render.gaussians import render_splats
from fvgen.render.splats import init_splats
from fvgen.stages import fit as fit_stage
from tests.fit.test_pose_refine import _cameras, _perturbed, _surface


def _priors_folder(root, cameras):
    """A finished priors stage folder (images rendered at the true cameras, ``cameras`` recorded)."""
    pts = _surface()
    with torch.no_grad():
        images = render_splats(init_splats(pts.xyz, pts.rgb, 0, 0.9, 1.0, "cpu"), _cameras())[0].clamp(0, 1)
    folder = root / "priors"
    Priors(list(cameras), pts, pts).save(folder)
    for cam, img in zip(cameras, images):
        save_image(folder / "images" / cam.name, img.numpy())
    return StageResult("priors", "pk", folder, "cached", 0.0, {}, "r")


def test_fit_stage_writes_and_exports_the_refined_cameras(tmp_path, one_thread):
    from fvgen.pipeline import export

    gt = _cameras()
    given = [gt[0], gt[1], _perturbed(gt[2], 1.5, [0.3, 1.0, 0.2], [0.04, -0.03, 0.02])]
    pri = _priors_folder(tmp_path, given)
    conf = FitConf(iterations=30, sh_degree=0, strategy="none", pose_lr=1e-3, pose_refine_start=0.0)

    off = fit_stage.main(conf, pri, tmp_path / "off", "cpu")
    assert "pose_refine" not in off.figures
    kept = read_cameras_opencv_json(off.path / "cameras.json")
    assert [c.c2w.tolist() for c in kept] == [c.c2w.tolist() for c in given]

    on = fit_stage.main(dataclasses.replace(conf, pose_refine=True), pri, tmp_path / "on", "cpu")
    assert on.key != off.key
    moves = on.figures["pose_refine"]
    assert moves["rotation_deg"][0] == 0.0 and moves["rotation_deg"][2] > 0.0 and moves["translation"][2] > 0.0
    refined = fit_stage.input_cameras(on, given)
    assert np.array_equal(refined[0].c2w, given[0].c2w) and not np.allclose(refined[2].c2w, given[2].c2w)
    assert [c.name for c in refined] == [c.name for c in given]
    assert json.loads((on.path / "stage.json").read_text())["figures"]["pose_refine"] == moves

    export(tmp_path / "on", pri, on)
    exported = read_transforms_json(tmp_path / "on" / "cameras" / "transforms.json")
    assert np.allclose([c.c2w for c in exported], [c.c2w for c in refined], atol=1e-6)
    assert (tmp_path / "on" / "cameras" / "colmap" / "images.txt").exists()


def test_input_cameras_of_an_older_fit_folder_are_the_priors(tmp_path):
    folder = tmp_path / "fit"
    folder.mkdir()
    res = StageResult("fit", "k", folder, "cached", 0.0, {}, "r")
    cams = _cameras()
    assert [c.c2w.tolist() for c in fit_stage.input_cameras(res, cams)] == [c.c2w.tolist() for c in cams]


def test_fit_stage_leaves_out_generated_views_of_zero_confidence(tmp_path, one_thread):
    """A generated view whose confidence is 0 everywhere (generate.min_coverage) is not fitted: the
    fit counts it as dropped, and fits the same as without it."""
    from fvgen.core.cameras import write_cameras_opencv_json
    from fvgen.core.video import write_pngs

    gt = _cameras()
    pri = _priors_folder(tmp_path, gt)
    folder = tmp_path / "generate"
    extra_cams = [dataclasses.replace(c, name=f"g{i}") for i, c in enumerate(_cameras(5)[1:4])]
    frames = [np.full((c.height, c.width, 3), 0.5, np.float32) for c in extra_cams]
    conf_maps = [np.full((c.height, c.width), v, np.float32) for c, v in zip(extra_cams, (0.8, 0.0, 0.6))]
    write_pngs(folder / "rgb", frames, [c.name for c in extra_cams])
    write_pngs(folder / "mask", conf_maps, [c.name for c in extra_cams])
    write_cameras_opencv_json(extra_cams, folder / "cameras.json")
    conf = FitConf(iterations=10, sh_degree=0, strategy="none")
    res = fit_stage.main(conf, pri, tmp_path / "out", "cpu", extra=[fit_stage.ExtraViews(folder, "gen.1")])
    assert res.figures["extra_views"] == 2 and res.figures["extra_views_dropped"] == 1
