"""Joint refinement of the input cameras' poses during the fit (fit.pose_refine): the 6-D rotation,
the gauge (camera 0 fixed, scene scale kept), gradients through the rasterizer into the pose delta,
recovery of a perturbed camera on a synthetic scene, negligible motion with exact cameras, strict
settings and the fit stage's cache key."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from fvgen.core.cameras import Camera, look_at, rotation_angle_deg
from fvgen.core.errors import FvgenError
from fvgen.core.metrics import psnr
from fvgen.core.pointcloud import PointCloud
from fvgen.fit import FitConf, FitViews, InputPoseRefiner, fit_gaussians, scene_scale
from fvgen.fit.poses import IDENTITY_6D, rotation_6d_to_matrix
from fvgen.render.gaussians import gsplat_camera, rasterize_at, render_splats
from fvgen.render.splats import init_splats

W, H, FOCAL = 48, 36, 45.0


def _surface(n: int = 600, seed: int = 0) -> PointCloud:
    """A wavy, colour-textured sheet around the origin: points [n, 3], colours [n, 3]."""
    u = np.random.default_rng(seed).uniform(-1, 1, (n, 2))
    xyz = np.c_[u[:, 0], u[:, 1], 0.4 * np.sin(3 * u[:, 0]) * np.cos(2 * u[:, 1])]
    rgb = 0.5 + 0.5 * np.c_[np.sin(7 * u[:, 0]), np.cos(9 * u[:, 1]), np.sin(5 * (u[:, 0] + u[:, 1]))]
    return PointCloud(xyz, rgb.clip(0, 1))


def _cameras(n: int = 3) -> list[Camera]:
    K = np.array([[FOCAL, 0, (W - 1) / 2], [0, FOCAL, (H - 1) / 2], [0, 0, 1]])
    return [Camera(K, look_at(np.array([3 * math.sin(a), 0.2 * i - 0.2, -3 * math.cos(a)]), np.zeros(3),
                              np.array([0, -1.0, 0])), W, H, f"v{i}.png")
            for i, a in enumerate(np.linspace(-0.35, 0.35, n))]


def _perturbed(cam: Camera, deg: float, axis, shift) -> Camera:
    """``cam`` rotated by ``deg`` about ``axis`` (in its own frame) and its centre moved by ``shift``."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    Kx = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = math.radians(deg)
    c2w = cam.c2w.copy()
    c2w[:3, :3] = c2w[:3, :3] @ (np.eye(3) + math.sin(t) * Kx + (1 - math.cos(t)) * Kx @ Kx)
    c2w[:3, 3] += np.asarray(shift, float)
    return dataclasses.replace(cam, c2w=c2w)


def _errors(a: Camera, b: Camera) -> tuple[float, float]:
    return rotation_angle_deg(a.c2w[:3, :3].T @ b.c2w[:3, :3]), float(np.linalg.norm(a.center - b.center))


def _pixel_shift(a: Camera, b: Camera, xyz: np.ndarray) -> float:
    """Mean distance (pixels) between the projections of ``xyz`` [N, 3] by ``a`` and by ``b``."""
    def project(c):
        p = (np.c_[xyz, np.ones(len(xyz))] @ c.w2c.T)[:, :3] @ c.K.T
        return p[:, :2] / p[:, 2:]
    return float(np.linalg.norm(project(a) - project(b), axis=1).mean())


@pytest.fixture(scope="module")
def scene():
    """Ground-truth images [3, H, W, 3] of the sheet as opaque splats, their cameras, and a noisy
    copy of the points to start fits from."""
    pts = _surface()
    cams = _cameras()
    with torch.no_grad():
        images = render_splats(init_splats(pts.xyz, pts.rgb, 0, 0.9, 1.0, "cpu"), cams)[0].clamp(0, 1)
    init = PointCloud(pts.xyz + np.random.default_rng(1).normal(0, 0.02, pts.xyz.shape), pts.rgb)
    return images, cams, init


def _fit(images, cams, init, **conf):
    conf = FitConf(iterations=150, sh_degree=0, strategy="none", pose_lr=1e-3, **conf)
    splats, figures, out = fit_gaussians(FitViews(images, cams), init, conf)
    with torch.no_grad():
        renders = render_splats(splats, out)[0].clamp(0, 1)
    return figures, out, float(np.mean([psnr(r, t) for r, t in zip(renders, images)]))


def test_6d_rotation_is_the_identity_at_rest_and_orthonormal():
    assert torch.allclose(rotation_6d_to_matrix(torch.tensor(IDENTITY_6D)), torch.eye(3))
    R = rotation_6d_to_matrix(torch.randn(5, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(5, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(5, dtype=torch.float64))


def test_refiner_keeps_camera_0_and_the_scene_scale():
    cams = _cameras(4)
    c2w = torch.tensor(np.stack([c.c2w for c in cams]))
    ref = InputPoseRefiner(c2w, scene_scale(cams))
    assert torch.equal(ref.c2w(), c2w)  # zero delta: no change at all
    with torch.no_grad():
        ref.delta.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    out = ref.c2w().detach()
    assert torch.equal(out[0], c2w[0])
    spread = lambda m: float((m[1:, :3, 3] - m[0, :3, 3]).norm(dim=-1).sum())  # noqa: E731
    assert spread(out) == pytest.approx(spread(c2w), rel=1e-12)
    assert not torch.allclose(out[1:], c2w[1:], atol=1e-3)  # but the other cameras did move
    w2c = ref.viewmats().double()
    assert torch.allclose(w2c @ out, torch.eye(4, dtype=torch.float64).expand(4, 4, 4), atol=1e-5)
    refined = ref.refined_cameras(cams)
    assert refined[0] is cams[0] and np.allclose(refined[2].c2w, out[2].detach().numpy())


def test_gradients_reach_the_pose_delta_through_the_rasterizer(scene):
    images, cams, init = scene
    splats = init_splats(init.xyz, init.rgb, 0, 0.9, 1.0, "cpu")
    ref = InputPoseRefiner(torch.tensor(np.stack([c.c2w for c in cams])), scene_scale(cams))
    _, Ks = gsplat_camera(cams, "cpu")
    colors, _, _ = rasterize_at(splats, ref.viewmats(), Ks, W, H, 0)
    (colors - images).abs().mean().backward()
    assert ref.delta.grad is not None and torch.isfinite(ref.delta.grad).all()
    assert (ref.delta.grad.abs().sum(1) > 0).all()  # every refined camera, rotation and translation


def test_refinement_recovers_a_perturbed_camera(scene, one_thread):
    images, gt, init = scene
    bad = list(gt)
    bad[2] = _perturbed(gt[2], 1.5, [0.3, 1.0, 0.2], [0.04, -0.03, 0.02])
    rot0, trans0 = _errors(bad[2], gt[2])
    _, kept, psnr_fixed = _fit(images, bad, init)
    figures, refined, psnr_refined = _fit(images, bad, init, pose_refine=True)
    assert [c.c2w.tolist() for c in kept] == [c.c2w.tolist() for c in bad]  # off: cameras as given
    assert refined[0] is bad[0]  # the gauge camera never moves
    rot, trans = _errors(refined[2], gt[2])
    assert rot < 0.5 * rot0 and trans < 0.5 * trans0
    assert psnr_refined > psnr_fixed + 2.0
    moves = figures["pose_refine"]
    assert moves["rotation_deg"][0] == 0.0 and moves["translation"][0] == 0.0
    assert moves["rotation_deg"][2] == pytest.approx(_errors(bad[2], refined[2])[0], abs=1e-3)


def test_exact_cameras_barely_move(scene, one_thread):
    images, gt, init = scene
    figures, refined, _ = _fit(images, gt, init, pose_refine=True)
    shifts = [_pixel_shift(a, b, init.xyz) for a, b in zip(refined, gt)]
    assert shifts[0] == 0.0 and max(shifts) < 0.3  # pixels; the perturbation above is ~2 px
    assert figures["pose_refine"]["max_rotation_deg"] < 0.25


def test_bad_pose_settings_are_one_line_errors():
    for bad in ({"pose_refine": "yes"}, {"pose_lr": 0.0}, {"pose_lr": -1e-3}, {"pose_lr": 1.0},
                {"pose_refine_start": 1.0}, {"pose_refine_start": -0.1}, {"pose_lr": True}):
        with pytest.raises(FvgenError, match=r"^fit\.pose_\w+ must") as e:
            FitConf(**bad)
        assert "\n" not in str(e.value)


def test_fit_key_ignores_pose_settings_while_refinement_is_off(tmp_path):
    from fvgen.core.cache import StageResult
    from fvgen.stages.fit import key

    pri = StageResult("priors", "k", tmp_path, "cached", 0.0, {}, "r")
    off = FitConf()
    assert key(off, pri, [], "cpu") == key(dataclasses.replace(off, pose_lr=1e-2, pose_refine_start=0.5), pri, [], "cpu")
    on = dataclasses.replace(off, pose_refine=True)
    assert key(on, pri, [], "cpu") != key(off, pri, [], "cpu")
    assert key(on, pri, [], "cpu") != key(dataclasses.replace(on, pose_lr=1e-2), pri, [], "cpu")
