"""Test-camera alignment on a frozen scene: a known small pose error is recovered."""

from __future__ import annotations

import math

import numpy as np
import torch

from fvgen.core.cameras import Camera, rotation_angle_deg
from fvgen.core.metrics import psnr
from fvgen.evaluation.align import align_camera, axis_angle_to_matrix
from fvgen.render.gaussians import render_splats

C0 = 0.28209479177387814


def textured_wall(n: int = 40, seed: int = 0) -> dict[str, torch.Tensor]:
    """n x n splats on a 2 x 2 wall at z = 0 whose central square stands out to z = -1 (depth
    variation: on one plane a small rotation and a sideways move look alike), colours [N, 1, 3]."""
    g = torch.Generator().manual_seed(seed)
    u = torch.linspace(-1, 1, n)
    yy, xx = torch.meshgrid(u, u, indexing="ij")
    z = torch.where((xx.abs() < 0.4) & (yy.abs() < 0.4), -1.0, 0.0)
    means = torch.stack([xx.reshape(-1), yy.reshape(-1), z.reshape(-1)], 1)
    rgb = 0.5 + 0.4 * torch.stack([torch.sin(3 * xx + 1), torch.cos(4 * yy), torch.sin(2 * (xx + yy))], -1)
    rgb = (rgb.reshape(-1, 3) + 0.05 * torch.randn(n * n, 3, generator=g)).clamp(0.05, 0.95)
    N = n * n
    return {"means": means, "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(N, 1),
            "scales": torch.full((N, 3), math.log(2.0 / n)), "opacities": torch.full((N,), 4.0),
            "sh0": ((rgb - 0.5) / C0)[:, None, :], "shN": torch.zeros(N, 0, 3)}


def camera(c2w: np.ndarray, w: int = 64, h: int = 48) -> Camera:
    return Camera(K=np.array([[50.0, 0, w / 2], [0, 50.0, h / 2], [0, 0, 1]]), c2w=c2w, width=w, height=h)


def test_axis_angle_matches_rodrigues_and_is_identity_at_zero():
    assert torch.allclose(axis_angle_to_matrix(torch.zeros(3)), torch.eye(3))
    R = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2])).numpy()
    assert np.allclose(R, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-6)


def test_perturbed_test_camera_is_recovered_and_its_score_rises():
    torch.manual_seed(0)
    splats = textured_wall()
    gt_c2w = np.eye(4)
    gt_c2w[:3, 3] = [0.05, -0.03, -2.0]  # looking at the wall along +z
    gt = camera(gt_c2w)
    with torch.no_grad():
        target = render_splats(splats, [gt])[0][0].clamp(0, 1)
    # a known error: 1.5 degrees about a tilted axis and 4 % of the distance sideways
    axis = np.array([0.3, 1.0, 0.2]) / np.linalg.norm([0.3, 1.0, 0.2])
    dR = axis_angle_to_matrix(torch.tensor(axis * math.radians(1.5), dtype=torch.float32)).double().numpy()
    start_c2w = gt_c2w.copy()
    start_c2w[:3, :3] = dR @ gt_c2w[:3, :3]
    start_c2w[:3, 3] += [0.08, 0.03, 0.0]
    start = camera(start_c2w)
    with torch.no_grad():
        raw = psnr(render_splats(splats, [start])[0][0].clamp(0, 1), target)
    aligned, info = align_camera(splats, start, target.numpy(), steps=150)
    with torch.no_grad():
        after = psnr(render_splats(splats, [aligned])[0][0].clamp(0, 1), target)
    rot_err = rotation_angle_deg(aligned.c2w[:3, :3] @ gt_c2w[:3, :3].T)
    pos_err = float(np.linalg.norm(aligned.c2w[:3, 3] - gt_c2w[:3, 3]))
    assert not info["kept_start"] and info["loss_end"] < info["loss_start"]
    assert rot_err < 0.3, rot_err  # from 1.5 degrees
    assert pos_err < 0.02, pos_err  # from 0.085
    assert after > raw + 8 and after > 35, (raw, after)  # the ground-truth pose scores inf (identical image)
    assert splats["means"].grad is None  # the scene stayed frozen


def test_score_heldout_reports_raw_and_aligned_and_picks_the_headline(tmp_path):
    from fvgen.evaluation.align import EvalConf
    from fvgen.evaluation.heldout import score_heldout

    splats = textured_wall(24)
    gt_c2w = np.eye(4)
    gt_c2w[:3, 3] = [0.0, 0.0, -2.0]
    with torch.no_grad():
        target = render_splats(splats, [camera(gt_c2w, 32, 24)])[0][0].clamp(0, 1).numpy()
    off = gt_c2w.copy()
    off[:3, 3] += [0.06, -0.02, 0.0]
    cams = [camera(off, 32, 24)]
    raw = score_heldout(splats, cams, [target], ["v.png"], tmp_path, EvalConf())
    assert raw["headline"] == "raw" and raw["results_aligned"] is None and raw["results"] == raw["results_raw"]
    assert (tmp_path / "compare" / "v.png").is_file() and not (tmp_path / "compare_raw").exists()
    both = score_heldout(splats, cams, [target], ["v.png"], tmp_path, EvalConf(align_test_poses=True, align_steps=60))
    assert both["headline"] == "aligned" and both["results"] == both["results_aligned"]
    assert both["results_raw"] == raw["results_raw"]
    assert both["results_aligned"]["psnr"] > both["results_raw"]["psnr"] + 5
    assert both["per_view"][0]["raw"]["psnr"] == raw["per_view"][0]["psnr"]
    assert both["pose_alignment"]["per_view"][0]["translation"] > 0.02
    assert (tmp_path / "compare" / "v.png").is_file() and (tmp_path / "compare_raw" / "v.png").is_file()
