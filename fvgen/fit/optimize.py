"""3DGS fitting: Gaussians initialised from the dense prior, optimised with L1 + D-SSIM against
the input views (and, later, generated views with their own weights and per-pixel masks).

Rasterization goes through :func:`fvgen.render.gaussians.rasterize` (gsplat on CUDA, our tiled
torch rasterizer on CPU); densification through gsplat's strategy classes, which are pure torch
and run on both.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import torch

from ..core.cameras import Camera
from ..core.pointcloud import PointCloud
from ..render.gaussians import gsplat_camera, rasterize_at
from ..render.splats import init_splats, num_sh_bases
from .poses import InputPoseRefiner, pose_changes


@dataclass(frozen=True)
class FitConf:
    iterations: int = 3000
    sh_degree: int = 3
    sh_degree_interval: int = 1000  # raise the active SH degree every this many steps
    ssim_lambda: float = 0.2
    init_opacity: float = 0.1
    init_scale: float = 1.0
    max_init_points: int = 300_000
    init: str = "prior"  # "prior": the dense point cloud; "random": coloured random points in the views' frusta
    random_init_points: int = 100_000
    means_lr: float = 1.6e-4  # times the scene scale, decayed x0.01 over the run
    scales_lr: float = 5e-3
    quats_lr: float = 1e-3
    opacities_lr: float = 5e-2
    sh0_lr: float = 2.5e-3
    shN_lr: float = 2.5e-3 / 20
    strategy: str = "default"  # "default" (gsplat DefaultStrategy), "mcmc" or "none"
    refine_start_iter: int = 500
    refine_stop_fraction: float = 0.5  # stop densifying after this fraction of iterations
    refine_every: int = 100
    reset_every: int = 3000
    grow_grad2d: float = 0.0002
    cap_max: int = 300_000  # MCMC only
    batch_size: int = 1  # views per step
    seed: int = 0
    # Generated views (FitViews beyond its first ``inputs``). They enter at ``generated_start`` x
    # iterations and leave at ``generated_stop`` x iterations; while they are in, a step draws an
    # input view with probability ``input_share`` (so the photos are never starved of steps), else a
    # generated one, whose loss counts ``generated_weight`` x (times its per-pixel confidence mask)
    # against an input's 1, decaying linearly to ``generated_weight_end`` x at ``generated_stop``.
    # Defaults measured on the cpu preset (docs/experiments/fit.md, "Making fill safe"): the photos
    # keep 75 % of the steps while generated views are in and the fit's last 60 % alone (so it ends
    # on what the photos show: fern's input-view PSNR within 0.01 dB of the photos-alone fit), and a
    # generated view weighs by its mean confidence (generated_norm).
    input_share: float = 0.75
    generated_weight: float = 1.0
    generated_weight_end: float = 1.0
    generated_start: float = 0.0
    generated_stop: float = 0.4
    # How a generated view's per-pixel confidence normalises its loss. "confidence": the
    # confidence-weighted mean error (sum c * err / sum c), so every generated view counts alike
    # however little of it the warp saw or however far it is from the photos; "pixels": sum c * err
    # over the pixel count, so a view counts by its mean confidence (a view that is mostly filled
    # holes, or far from every input, weighs less). The photos' loss is the same either way.
    generated_norm: str = "pixels"
    # The photos' steps while generated views are in: "shared" (the fit keeps ``iterations`` steps,
    # so the photos get ``input_share`` of those inside the generated window) or "kept" (the fit is
    # lengthened by the steps generated views take, in expectation, so the photos get as many steps
    # as in a photos-alone fit of ``iterations``; every window above stays a fraction of the run).
    input_steps: str = "shared"
    # Joint refinement of the input cameras' poses (estimated poses; :mod:`fvgen.fit.poses`):
    # from ``pose_refine_start`` x iterations (the Gaussians settle first), Adam at ``pose_lr`` per
    # step on a 6-D rotation offset and a translation in scene-scale units, decaying 10x by the
    # end. The first input camera and the scene scale stay fixed; generated views keep their cameras.
    pose_refine: bool = False
    pose_lr: float = 5e-4
    pose_refine_start: float = 0.2

    def __post_init__(self):
        from ..core.errors import FvgenError

        if not isinstance(self.pose_refine, bool):
            raise FvgenError(f"fit.pose_refine must be true or false, got {self.pose_refine!r}")
        if isinstance(self.pose_lr, bool) or not isinstance(self.pose_lr, (int, float)) \
                or not 0.0 < self.pose_lr <= 0.1:
            raise FvgenError(f"fit.pose_lr must be in (0, 0.1], got {self.pose_lr!r}")
        if isinstance(self.pose_refine_start, bool) or not isinstance(self.pose_refine_start, (int, float)) \
                or not 0.0 <= self.pose_refine_start < 1.0:
            raise FvgenError(f"fit.pose_refine_start must be in [0, 1), got {self.pose_refine_start!r}")

        for name in ("input_share", "generated_start", "generated_stop"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise FvgenError(f"fit.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.generated_start > self.generated_stop:
            raise FvgenError("fit.generated_start must not be after fit.generated_stop")
        if self.generated_weight < 0 or self.generated_weight_end < 0:
            raise FvgenError("fit.generated_weight and generated_weight_end must be >= 0")
        if self.generated_norm not in ("confidence", "pixels"):
            raise FvgenError(f"fit.generated_norm must be confidence or pixels, got {self.generated_norm!r}")
        if self.input_steps not in ("shared", "kept"):
            raise FvgenError(f"fit.input_steps must be shared or kept, got {self.input_steps!r}")
        if self.input_steps == "kept" and self._generated_share() >= 1.0:
            raise FvgenError("fit.input_steps = \"kept\" needs fit.input_share > 0 or a generated window "
                             "shorter than the fit (else the photos get no steps to keep)")

    def _generated_share(self) -> float:
        """The expected share of all steps that fit generated views (when there are some)."""
        return (self.generated_stop - self.generated_start) * (1.0 - self.input_share)

    def total_iterations(self, generated: bool) -> int:
        """Steps of a fit with (``generated``) or without generated views: ``iterations``, or with
        ``input_steps = "kept"`` and generated views, ``iterations / (1 - window x (1 - input_share))``
        rounded, the window being ``generated_stop - generated_start``, so the photos' expected steps
        equal ``iterations``."""
        if not generated or self.input_steps == "shared":
            return self.iterations
        return int(round(self.iterations / (1.0 - self._generated_share())))

    def generated_weight_at(self, step: int) -> float:
        """The weight of a generated view's loss at ``step`` (0 outside its window)."""
        a, b = self.generated_start * self.iterations, self.generated_stop * self.iterations
        if not a <= step < b:
            return 0.0
        t = (step - a) / max(b - a, 1.0)
        return self.generated_weight + t * (self.generated_weight_end - self.generated_weight)


@dataclass
class FitViews:
    """Training views: images [V, H, W, 3] in [0, 1], their cameras, optional per-image weights
    [V] and per-pixel masks [V, H, W] in [0, 1] (the weight of each pixel's loss; 1 = full).

    The first ``inputs`` views are the photos, the rest generated views (None: all are photos);
    how the fit draws and weighs the two is in :class:`FitConf`."""

    images: torch.Tensor
    cameras: Sequence[Camera]
    weights: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    inputs: int | None = None


def scene_scale(cameras: Sequence[Camera]) -> float:
    """As 3DGS: 1.1 x the largest distance of a camera centre from their mean."""
    c = np.stack([cam.center for cam in cameras])
    return float(1.1 * max(np.linalg.norm(c - c.mean(0), axis=1).max(), 1e-6))


def _subsample(points: PointCloud, n: int, seed: int) -> PointCloud:
    if len(points) <= n:
        return points
    idx = np.random.default_rng(seed).choice(len(points), n, replace=False)
    return points.subset(np.sort(idx))


def masked_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None,
                weights: torch.Tensor | None, ssim_lambda: float, norm: str = "confidence") -> torch.Tensor:
    """L1 + lambda (1 - SSIM) per pixel, weighted by ``mask`` [B, H, W] in [0, 1] and averaged over
    each image's mask (``norm`` "confidence") or over all its pixels ("pixels": an image counts by
    its mask's mean); each image's loss times its weight (``weights`` [B], 1 when None), averaged
    over the batch. The weights are not renormalised: a view of weight 0.3 pushes the splats 0.3x
    as hard as one of weight 1, even alone in its batch."""
    from ..core.metrics import ssim_map

    B = pred.shape[0]
    m = torch.ones(pred.shape[:3], device=pred.device) if mask is None else mask.float()
    w = torch.ones(B, device=pred.device) if weights is None else weights.float()
    l1 = (pred - target).abs().mean(-1)  # [B, H, W]
    s = ssim_map(pred.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2)).mean(1)  # [B, H, W]
    per_pixel = (1 - ssim_lambda) * l1 + ssim_lambda * (1 - s)
    num = (per_pixel * m).flatten(1).sum(1)
    if norm == "pixels":
        den = torch.full_like(num, float(m[0].numel()))
    else:
        den = m.flatten(1).sum(1).clamp_min(1.0)
    return (w * num / den).mean()


def _make_strategy(conf: FitConf, scale: float):
    if conf.strategy == "none":
        return None, None
    from gsplat.strategy import DefaultStrategy, MCMCStrategy

    stop = int(conf.iterations * conf.refine_stop_fraction)
    if conf.strategy == "mcmc":
        strat = MCMCStrategy(cap_max=conf.cap_max, refine_start_iter=conf.refine_start_iter,
                             refine_stop_iter=stop, refine_every=conf.refine_every)
    elif conf.strategy == "default":
        strat = DefaultStrategy(refine_start_iter=conf.refine_start_iter, refine_stop_iter=stop,
                                refine_every=conf.refine_every, reset_every=conf.reset_every,
                                grow_grad2d=conf.grow_grad2d)
    else:
        from ..core.errors import FvgenError

        raise FvgenError(f"unknown densification strategy {conf.strategy!r}: use default, mcmc or none")
    return strat, strat.initialize_state(scene_scale=scale) if conf.strategy == "default" else strat.initialize_state()


class ViewSampler:
    """Which views each step fits. Photos only (no generated views, or outside their window): each
    epoch a seeded permutation, as plain 3DGS. With generated views in their window, each batch slot
    is an input with probability ``input_share``, else a generated view (each pool cycled through
    its own permutation), and carries the weight of its kind: 1 or ``generated_weight_at(step)``."""

    def __init__(self, n_inputs: int, n_views: int, conf: FitConf, rng: np.random.Generator):
        self.n_inputs, self.n_views, self.conf, self.rng = n_inputs, n_views, conf, rng
        self.coin = np.random.default_rng([conf.seed, 1])  # apart from ``rng``: photo-only runs stay as they were
        self.orders: dict[str, list[int]] = {"all": [], "inputs": [], "generated": []}

    def _pop(self, pool: str) -> int:
        if not self.orders[pool]:
            lo, hi = {"all": (0, self.n_views), "inputs": (0, self.n_inputs), "generated": (self.n_inputs, self.n_views)}[pool]
            self.orders[pool] = list(lo + self.rng.permutation(hi - lo))
        return self.orders[pool].pop()

    def draw(self, step: int, batch: int) -> tuple[list[int], list[float] | None]:
        gw = self.conf.generated_weight_at(step) if self.n_views > self.n_inputs else 0.0
        if self.n_views == self.n_inputs:
            if len(self.orders["all"]) < batch:  # as before generated views existed: the same order
                self.orders["all"] = list(self.rng.permutation(self.n_views)) + self.orders["all"]
            return [self.orders["all"].pop() for _ in range(batch)], None
        if gw <= 0.0:
            return [self._pop("inputs") for _ in range(batch)], [1.0] * batch
        idx, w = [], []
        for _ in range(batch):
            if self.coin.random() < self.conf.input_share:
                idx.append(self._pop("inputs"))
                w.append(1.0)
            else:
                idx.append(self._pop("generated"))
                w.append(gw)
        return idx, w


def random_frustum_points(views: "FitViews", prior: PointCloud, n: int, seed: int) -> PointCloud:
    """``n`` points at random pixels of random views, at depths uniform between the 2nd and 98th
    percentile of the prior's depths in that view, coloured by the pixel: the usual random
    initialisation of sparse-view 3DGS baselines."""
    rng = np.random.default_rng(seed)
    imgs = views.images.cpu().numpy()
    xyz, rgb = [], []
    per_view = np.bincount(rng.integers(0, len(views.cameras), n), minlength=len(views.cameras))
    for cam, img, m in zip(views.cameras, imgs, per_view):
        z = (np.c_[prior.xyz, np.ones(len(prior))] @ cam.w2c.T)[:, 2]
        z = z[z > 0]
        lo, hi = (np.percentile(z, [2, 98]) if len(z) > 10 else (0.1, 10.0))
        u = rng.integers(0, cam.width, m)
        v = rng.integers(0, cam.height, m)
        d = rng.uniform(lo, hi, m)
        rays = np.linalg.solve(cam.K, np.stack([u, v, np.ones(m)]))  # [3, m], z = 1
        pts_cam = rays * d
        xyz.append((cam.c2w[:3, :3] @ pts_cam).T + cam.c2w[:3, 3])
        rgb.append(img[v, u])
    return PointCloud(np.concatenate(xyz), np.concatenate(rgb))


def fit_gaussians(views: FitViews, init: PointCloud, conf: FitConf, device: str | torch.device = "cpu",
                  progress: Callable[[int, dict], None] | None = None
                  ) -> tuple[dict[str, torch.Tensor], dict, list[Camera]]:
    """Optimise Gaussians on ``views`` starting from ``init``. Returns the raw parameters (on CPU),
    figures (iterations, seconds, iterations/s, final loss, Gaussians; with ``conf.pose_refine``
    also ``pose_refine``: per input camera the change in degrees and scene units) and the input
    cameras the splats were fitted to (refined with ``conf.pose_refine``, else as given)."""
    V = len(views.images)
    if views.inputs is not None and V > views.inputs:
        conf = replace(conf, iterations=conf.total_iterations(True))
    torch.manual_seed(conf.seed)
    rng = np.random.default_rng(conf.seed)
    device = torch.device(device)
    images = views.images.to(device).float()
    masks = None if views.masks is None else views.masks.to(device).float()
    weights = None if views.weights is None else views.weights.to(device).float()
    n_inputs = V if views.inputs is None else int(views.inputs)
    scale = scene_scale(views.cameras[:n_inputs])  # generated cameras must not change the scene's scale
    if conf.init == "random":
        init = random_frustum_points(views, init, conf.random_init_points, conf.seed)
    elif conf.init != "prior":
        from ..core.errors import FvgenError

        raise FvgenError(f"unknown fit.init {conf.init!r}: use prior or random")
    pts = _subsample(init, conf.max_init_points, conf.seed)
    params = init_splats(pts.xyz, pts.rgb, conf.sh_degree, conf.init_opacity, conf.init_scale, device)
    splats = torch.nn.ParameterDict({k: torch.nn.Parameter(v) for k, v in params.items()})
    lrs = {"means": conf.means_lr * scale, "scales": conf.scales_lr, "quats": conf.quats_lr,
           "opacities": conf.opacities_lr, "sh0": conf.sh0_lr, "shN": conf.shN_lr}
    bs = max(1, min(conf.batch_size, V))
    # Adam per parameter (gsplat's strategies expect one optimizer per parameter); lr scaled
    # by sqrt(batch) as gsplat's trainer does.
    optimizers = {k: torch.optim.Adam([{"params": splats[k], "lr": lrs[k] * math.sqrt(bs), "name": k}],
                                      eps=1e-15 / math.sqrt(bs), betas=(1 - bs * 0.1, 1 - bs * 0.001))
                  for k in splats}
    means_decay = 0.01 ** (1.0 / max(conf.iterations, 1))
    strategy, state = _make_strategy(conf, scale)
    if strategy is not None:
        strategy.check_sanity(splats, optimizers)
    cams = list(views.cameras)
    if len({(c.width, c.height) for c in cams}) != 1:
        from ..core.errors import FvgenError

        raise FvgenError("all training views must have one image size")
    viewmats_all, Ks_all = gsplat_camera(cams, device)
    W, H = cams[0].width, cams[0].height
    refiner, pose_opt, pose_start, pose_decay = None, None, 0, 1.0
    if conf.pose_refine and n_inputs >= 2:
        c2w = torch.tensor(np.stack([c.c2w for c in cams[:n_inputs]]), dtype=torch.float64, device=device)
        refiner = InputPoseRefiner(c2w, scale).to(device)
        pose_opt = torch.optim.Adam([refiner.delta], lr=conf.pose_lr, eps=1e-15)
        pose_start = int(conf.pose_refine_start * conf.iterations)
        pose_decay = 0.1 ** (1.0 / max(conf.iterations - pose_start, 1))
    start = time.perf_counter()
    loss_val = float("nan")
    sampler = ViewSampler(n_inputs, V, conf, rng)
    for step in range(conf.iterations):
        batch, scale_w = sampler.draw(step, bs)
        sh_degree = min(step // max(conf.sh_degree_interval, 1), conf.sh_degree)
        b = torch.tensor(batch)
        refining = refiner is not None and step >= pose_start and any(0 < i < n_inputs for i in batch)
        if refining:  # input cameras from the pose deltas (gradients reach them), the rest fixed
            viewmats = torch.cat([refiner.viewmats(), viewmats_all[n_inputs:]])[b]
        else:
            viewmats = viewmats_all[b]
        colors, alphas, info = rasterize_at(splats, viewmats, Ks_all[b], W, H, sh_degree)
        if strategy is not None:
            strategy.step_pre_backward(splats, optimizers, state, step, info)
        w = None if weights is None else weights[b]
        if scale_w is not None:
            w = torch.tensor(scale_w, device=device) * (1.0 if w is None else w)
        loss = masked_loss(colors, images[b], None if masks is None else masks[b], w, conf.ssim_lambda,
                           conf.generated_norm)
        loss.backward()
        # Reading the loss forces a GPU sync: only every so often (and at the end).
        report = (step + 1) % 25 == 0 or step + 1 == conf.iterations
        if report:
            loss_val = float(loss.detach())
            if not math.isfinite(loss_val):
                from ..core.errors import FvgenError

                raise FvgenError(f"the fit diverged at step {step} (loss {loss_val}); try fewer iterations "
                                 "or the default preset")
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        for g in optimizers["means"].param_groups:
            g["lr"] *= means_decay
        if refining:
            pose_opt.step()
            pose_opt.zero_grad(set_to_none=True)
        if refiner is not None and step >= pose_start:
            for g in pose_opt.param_groups:
                g["lr"] *= pose_decay
        if strategy is not None:
            if conf.strategy == "mcmc":
                strategy.step_post_backward(splats, optimizers, state, step, info,
                                            lr=optimizers["means"].param_groups[0]["lr"])
            else:
                strategy.step_post_backward(splats, optimizers, state, step, info, packed=False)
        if progress is not None and report:
            progress(step + 1, {"loss": loss_val, "gaussians": len(splats["means"])})
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    out = {k: v.detach().cpu() for k, v in splats.items()}
    figures = {"iterations": conf.iterations, "seconds": round(seconds, 3),
               "iterations_per_s": round(conf.iterations / max(seconds, 1e-9), 2),
               "final_loss": loss_val, "gaussians": int(len(out["means"])),
               "init_points": int(len(pts)), "device": str(device)}
    input_cams = list(cams[:n_inputs])
    if refiner is not None:
        refined = refiner.refined_cameras(input_cams)
        figures["pose_refine"] = {"start_step": pose_start, "lr": conf.pose_lr,
                                  **pose_changes(input_cams, refined)}
        input_cams = refined
    assert out["shN"].shape[1] == num_sh_bases(conf.sh_degree) - 1
    return out, figures, input_cams
