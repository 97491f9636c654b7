"""Test-time adaptation of the teacher to the input views (leave one out).

Why: seven runs showed that what the teacher adds to the fill is learned from its training scenes
and does not carry to an unseen scene (RESULTS.md, "seventh run"). The input views themselves are
in-scene training pairs for free: the prior built from the *other* inputs, drawn into input ``i``'s
camera, has holes where those inputs did not see, and the real photo ``i`` is their ground truth.

:func:`leave_one_out_pairs` makes one pair per input view; :func:`pair_clips` turns a pair into
``F``-frame clips (a crop window gliding and zooming over the view, as a short camera move would,
whole clips mirrored at random) at the model size; :func:`adapt` fine-tunes a copy of the teacher on
them for ``steps`` steps with the training loss (:func:`fvgen.videomodel.train.diffusion_loss`) and
returns it, the original untouched.

What is trained (``rank``):

- ``rank > 0`` (default 4): a low-rank adapter (LoRA, Hu et al. 2021) on the UNet's attention
  projections (``to_q``, ``to_k``, ``to_v``, ``to_out.0``) and its 2D convolutions (``conv_in``,
  ``conv_out``, the resnets' ``conv1``/``conv2``), merged into the weights afterwards. Why: 2-10
  input views give 2-10 pairs; a full fine-tune of ~20 M weights fits those in a few dozen steps and
  can wreck what the model knows elsewhere, while a rank-4 update bounds how far each layer moves,
  trains ~1-2 % of the weights (AdamW state and step cost small, so it is cheap on a CPU), and once
  merged costs nothing at sampling time. The up-projections start at zero, so step 0 is the
  original model exactly.
- ``rank = 0``: all UNet and reference-encoder weights (for comparison).

In the pipeline: ``[generate.adapt]`` in a preset (:class:`AdaptConf` is
``GenerateConf.adapt``; ``--adapt-steps N`` on ``reconstruct``, ``generate`` and ``eval``). The
generate stage hands the priors stage's images, cameras, priors and priors settings to
:meth:`fvgen.videomodel.generators.ModelGenerator.prepare`, which adapts a copy of the loaded model
when ``steps > 0``; the report lands in the stage's figures (``run.json``). The settings are part of
the model generator's cache key only when ``steps > 0``. Off (``steps = 0``) in every preset: on fern
(CPU) 50 LoRA steps gained nothing on the held-out views (README).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..core.cameras import Camera
from ..core.errors import FvgenError

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "conv_in", "conv_out", "conv1", "conv2")


@dataclass(frozen=True)
class AdaptConf:
    steps: int = 0  # fine-tuning steps before generating (0: no adaptation)
    lr: float = 1e-4  # AdamW learning rate (constant; the LoRA path tolerates ~10x the full one)
    rank: int = 4  # LoRA rank; 0: fine-tune all UNet and reference-encoder weights
    alpha: float = 4.0  # LoRA scale is alpha / rank
    batch: int = 2  # clips per step
    clips_per_view: int = 8  # distinct augmented clips drawn per leave-one-out pair
    crop: tuple[float, float] = (0.5, 1.0)  # crop window side, fraction of the view (the clip zooms within it)
    prior: str = "auto"  # leave-one-out prior: "mvs" (dense stereo of the others), "visibility", "auto"
    cond_drop: float = 0.0  # as in training; 0 keeps every step conditioned
    seed: int = 0

    def __post_init__(self):
        if self.steps < 0 or self.rank < 0 or self.batch < 1 or self.clips_per_view < 1:
            raise FvgenError("adapt: steps and rank must be >= 0, batch and clips_per_view >= 1")
        if self.prior not in ("auto", "mvs", "visibility"):
            raise FvgenError(f"adapt prior must be auto, mvs or visibility, not {self.prior!r}")
        if not 0.0 < self.crop[0] <= self.crop[1] <= 1.0:
            raise FvgenError(f"adapt crop must satisfy 0 < low <= high <= 1, not {self.crop}")


# ----------------------------------------------------------------------------- low-rank adapters

class LowRank(nn.Module):
    """``base(x) + scale * up(down(x))`` for an ``nn.Linear`` or ``nn.Conv2d`` ``base`` (frozen):
    ``down`` has the base's kernel, stride and padding and ``rank`` outputs, ``up`` is 1x1 (or
    linear) and starts at zero."""

    def __init__(self, base: nn.Module, rank: int, scale: float):
        super().__init__()
        self.base, self.scale = base, scale
        if isinstance(base, nn.Linear):
            self.down = nn.Linear(base.in_features, rank, bias=False)
            self.up = nn.Linear(rank, base.out_features, bias=False)
        elif isinstance(base, nn.Conv2d):
            self.down = nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding,
                                  base.dilation, bias=False)
            self.up = nn.Conv2d(rank, base.out_channels, 1, bias=False)
        else:
            raise TypeError(f"no low-rank adapter for {type(base).__name__}")
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)
        self.to(base.weight.device, base.weight.dtype)

    def forward(self, x):
        return self.base(x) + self.scale * self.up(self.down(x))

    @torch.no_grad()
    def merged(self) -> nn.Module:
        """The base layer with the adapter folded into its weight."""
        up, down = self.up.weight, self.down.weight
        if isinstance(self.base, nn.Linear):
            delta = up @ down
        else:  # [out, r, 1, 1] x [r, in, kh, kw] -> [out, in, kh, kw]
            delta = torch.einsum("or,rikl->oikl", up[:, :, 0, 0].float(), down.float())
        self.base.weight += (self.scale * delta).to(self.base.weight.dtype)
        return self.base


def add_low_rank(module: nn.Module, rank: int, alpha: float, targets: Sequence[str] = LORA_TARGETS) -> list[LowRank]:
    """Wrap every ``nn.Linear``/``nn.Conv2d`` of ``module`` whose qualified name ends with one of
    ``targets`` in a :class:`LowRank` (in place); returns the adapters."""
    added = []
    for name, sub in list(module.named_modules()):
        if not isinstance(sub, (nn.Linear, nn.Conv2d)) or not any(name == t or name.endswith("." + t) for t in targets):
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        lr = LowRank(sub, rank, alpha / rank)
        if isinstance(parent, (nn.ModuleList, nn.Sequential)) and attr.isdigit():
            parent[int(attr)] = lr
        else:
            setattr(parent, attr, lr)
        added.append(lr)
    return added


def merge_low_rank(module: nn.Module) -> int:
    """Fold every :class:`LowRank` of ``module`` back into a plain layer (in place); returns how many."""
    n = 0
    for name, sub in list(module.named_modules()):
        if isinstance(sub, LowRank):
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            base = sub.merged()
            if isinstance(parent, (nn.ModuleList, nn.Sequential)) and attr.isdigit():
                parent[int(attr)] = base
            else:
                setattr(parent, attr, base)
            n += 1
    return n


# ----------------------------------------------------------------------------- leave-one-out pairs

def leave_one_out_cloud(images: np.ndarray, cams: Sequence[Camera], priors, i: int, mode: str = "auto",
                        priors_conf=None, device: str = "cpu"):
    """The prior input ``i`` did not help make, as a :class:`fvgen.core.pointcloud.PointCloud`:

    - ``mvs``: dense stereo (the pipeline's plane sweep, ``priors_conf.mvs``) of the other inputs
      with their poses -- exactly the prior the pipeline would build without view ``i`` (needs 3 or
      more inputs: stereo needs two views);
    - ``visibility``: the full prior less the points no other input camera sees (depth test against
      its z-buffer) -- any number of inputs, no stereo run, an upper bound of what the others know;
    - ``auto``: ``mvs`` with 3 or more inputs, else ``visibility``."""
    from .data.warpback import visible_from

    others = [k for k in range(len(cams)) if k != i]
    if not others:
        raise FvgenError("adaptation needs at least two input views")
    if mode == "auto":
        mode = "mvs" if len(others) >= 2 else "visibility"
    if mode == "mvs":
        if len(others) < 2:
            raise FvgenError("the mvs leave-one-out prior needs 3 or more input views (use visibility)")
        from .data import make_priors

        names = [c.name or f"view_{k}" for k, c in enumerate(cams)]
        return make_priors(images, cams, names, others, priors_conf, device, triangulate=False).points
    xyz = torch.as_tensor(priors.points.xyz, dtype=torch.float32, device=device)
    seen = torch.zeros(len(xyz), dtype=torch.bool, device=device)
    for k in others:
        seen |= visible_from(xyz, cams[k], 0.02)
    return priors.points.subset(seen.cpu().numpy())


def nearest_other(cams: Sequence[Camera], i: int) -> int:
    """The input camera nearest camera ``i`` (centre distance over the inputs' spread + viewing angle)."""
    from .generators import nearest_view

    others = [k for k in range(len(cams)) if k != i]
    return others[nearest_view(cams[i], [cams[k] for k in others])]


def leave_one_out_pairs(images: np.ndarray, cams: Sequence[Camera], priors, conf: AdaptConf = AdaptConf(),
                        priors_conf=None, device: str = "cpu") -> list[dict]:
    """One pair per input view ``i``: ``warp`` [H, W, 3] and ``mask`` [H, W] (the other inputs' prior
    drawn into camera ``i`` by the warp stage's renderer), ``gt`` = ``images[i]``, ``ref`` = the
    nearest other input image (never ``i`` itself: the reference must not show the holes' content).
    ``images`` [N, H, W, 3] floats in [0, 1], ``cams`` at that size."""
    from ..render.warp import WarpConf, render_warp
    from ..priors.prior import Priors

    if len(cams) < 2 or len(images) != len(cams):
        raise FvgenError("adaptation needs at least two input views, one camera per image")
    pairs = []
    for i in range(len(cams)):
        cloud = leave_one_out_cloud(images, cams, priors, i, conf.prior, priors_conf, device)
        if len(cloud) == 0:
            continue
        prior = Priors([c for k, c in enumerate(cams) if k != i], cloud, None, {"backend": "leave-one-out"})
        frames, masks = render_warp(prior, [cams[i]], WarpConf(), device)
        pairs.append({"warp": frames[0].astype(np.float32), "mask": masks[0], "gt": np.asarray(images[i], np.float32),
                      "ref": np.asarray(images[nearest_other(cams, i)], np.float32), "view": i,
                      "coverage": float(masks[0].mean())})
    if not pairs:
        raise FvgenError("no leave-one-out pair: the other inputs' priors are empty")
    return pairs


def pair_clips(pair: dict, n: int, frames: int, width: int, height: int, conf: AdaptConf,
               rng: np.random.Generator) -> list[dict]:
    """``n`` clips of one pair at the model size, tensors in the training batch layout: ``ref``
    [3, h, w], ``warp``/``gt`` [F, 3, h, w] in [-1, 1], ``mask`` [F, 1, h, w]. Each clip is a crop
    window (side ``conf.crop`` of the view, the model's aspect) moving and zooming linearly from one
    random place to another over ``frames`` frames; half the clips mirrored."""
    import torch.nn.functional as F

    H, W = pair["gt"].shape[:2]
    stack = torch.as_tensor(np.concatenate([pair["warp"], pair["mask"][..., None].astype(np.float32), pair["gt"]], -1))
    stack = stack.permute(2, 0, 1)[None]  # [1, 7, H, W]
    aspect = width / height
    ref = torch.as_tensor(pair["ref"]).permute(2, 0, 1)
    out = []
    for _ in range(n):
        ends = []
        for _ in range(2):
            s = rng.uniform(*conf.crop)
            cw = min(W, s * max(W, H * aspect))
            ch = cw / aspect
            if ch > H:
                ch, cw = H, H * aspect
            ends.append((rng.uniform(0, W - cw), rng.uniform(0, H - ch), cw, ch))
        boxes = [tuple(a + (b - a) * t for a, b in zip(*ends)) for t in np.linspace(0, 1, frames)]
        # affine grids: normalised coordinates of each box (align_corners=False convention)
        theta = torch.tensor([[[cw / W, 0, (2 * x + cw) / W - 1], [0, ch / H, (2 * y + ch) / H - 1]]
                              for x, y, cw, ch in boxes], dtype=torch.float32)
        grid = F.affine_grid(theta, (frames, 7, height, width), align_corners=False)
        clip = F.grid_sample(stack.expand(frames, -1, -1, -1), grid, mode="bilinear", align_corners=False)
        r = F.interpolate(ref[None], size=(height, width), mode="bilinear", antialias=True, align_corners=False)[0]
        warp, mask, gt = clip[:, :3], (clip[:, 3:4] > 0.5).float(), clip[:, 4:]
        if rng.random() < 0.5:
            warp, mask, gt, r = warp.flip(-1), mask.flip(-1), gt.flip(-1), r.flip(-1)
        out.append({"ref": r * 2 - 1, "warp": warp * 2 - 1, "mask": mask, "gt": gt * 2 - 1})
    return out


def stack_clips(clips: Sequence[dict], device) -> dict[str, torch.Tensor]:
    return {k: torch.stack([c[k] for c in clips]).to(device) for k in ("ref", "warp", "mask", "gt", "fill") if k in clips[0]}


@torch.no_grad()
def add_fills(clips: Sequence[dict], fill: str) -> None:
    """Each clip's fill of its warp (``fvgen.fill``; in place, key ``fill``), made once: a residual
    model's steps then do not make it again (as the training bank caches it)."""
    from .fill import fill_holes

    if not clips:
        return
    warp = torch.cat([c["warp"] for c in clips])
    mask = torch.cat([c["mask"] for c in clips])
    f = fill_holes(fill, (warp + 1) / 2, mask).clamp(0, 1) * 2 - 1
    for k, c in enumerate(clips):
        n = len(c["warp"])
        c["fill"] = f[k * n:(k + 1) * n]


# ----------------------------------------------------------------------------- the loop

@torch.no_grad()
def clip_loss(model, clips: Sequence[dict], seed: int = 1234, batch: int = 4) -> float:
    """The training loss on ``clips`` at fixed timesteps and noise (the same draw every call): the
    leave-one-out loss before and after adaptation."""
    from .train.steps import Denoiser, diffusion_loss, encode_batch, make_train_scheduler

    sched = make_train_scheduler(model)
    sched.alphas_cumprod = sched.alphas_cumprod.to(model.device)
    den = Denoiser(model)
    g = torch.Generator().manual_seed(seed)
    total, n = 0.0, 0
    for a in range(0, len(clips), batch):
        part = clips[a:a + batch]
        lat = encode_batch(model, stack_clips(part, model.device))
        total += float(diffusion_loss(model, den, lat, sched, 0.0, g)) * len(part)
        n += len(part)
    return total / max(n, 1)


def adapt(model, images: np.ndarray, cams: Sequence[Camera], priors, conf: AdaptConf, device: str = "cpu",
          priors_conf=None, pairs: list[dict] | None = None, log=None) -> tuple[object, dict]:
    """A copy of ``model`` (a :class:`fvgen.videomodel.model.TeacherModel`) fine-tuned for ``conf.steps``
    steps on the leave-one-out pairs of the input views (``images`` [N, H, W, 3] in [0, 1] with
    their ``cams``, ``priors`` the full prior; ``pairs`` made already skips making them), and a report:
    loss on held clips before and after, trainable weights, seconds."""
    from .train.steps import Denoiser, diffusion_loss, encode_batch, make_train_scheduler

    t0 = time.time()
    p = model.preset
    pairs = pairs if pairs is not None else leave_one_out_pairs(images, cams, priors, conf, priors_conf, device)
    t_pairs = time.time() - t0
    rng = np.random.default_rng([conf.seed, 1])
    train = [c for pr in pairs for c in pair_clips(pr, conf.clips_per_view, p.frames, p.width, p.height, conf, rng)]
    held = [c for pr in pairs for c in pair_clips(pr, 1, p.frames, p.width, p.height, conf,
                                                   np.random.default_rng([conf.seed, 2]))]
    if p.residual:
        add_fills(train + held, p.fill)
    tuned = copy.deepcopy(model).to(device, torch.float32)
    report = {"pairs": len(pairs), "coverage": [round(pr["coverage"], 3) for pr in pairs], "clips": len(train),
              "steps": conf.steps, "rank": conf.rank, "lr": conf.lr, "seconds_pairs": round(t_pairs, 2)}
    report["loss_before"] = clip_loss(tuned, held)
    if conf.steps == 0:
        report["loss_after"] = report["loss_before"]
        report["seconds"] = round(time.time() - t0, 2)
        return tuned.eval(), report
    for m in tuned.modules().values():
        m.requires_grad_(False)
    report["weights"] = sum(q.numel() for q in (*tuned.unet.parameters(), *tuned.ref.parameters()))
    if conf.rank > 0:
        params = [q for a in add_low_rank(tuned.unet, conf.rank, conf.alpha) for q in (*a.down.parameters(), *a.up.parameters())]
    else:
        params = [*tuned.unet.parameters(), *tuned.ref.parameters()]
    for q in params:
        q.requires_grad_(True)
    report["trainable"] = sum(q.numel() for q in params)
    opt = torch.optim.AdamW(params, lr=conf.lr, weight_decay=0.0)
    sched = make_train_scheduler(tuned)
    sched.alphas_cumprod = sched.alphas_cumprod.to(tuned.device)
    den = Denoiser(tuned)
    g = torch.Generator().manual_seed(conf.seed)
    tuned.train()
    t1 = time.time()
    order = np.random.default_rng([conf.seed, 3])
    for step in range(conf.steps):
        idx = order.choice(len(train), size=min(conf.batch, len(train)), replace=False)
        with torch.no_grad():
            lat = encode_batch(tuned, stack_clips([train[k] for k in idx], tuned.device))
        loss = diffusion_loss(tuned, den, lat, sched, conf.cond_drop, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if log is not None:
            log(step, loss.item())
    report["seconds_steps"] = round(time.time() - t1, 2)
    if conf.rank > 0:
        report["merged_layers"] = merge_low_rank(tuned.unet)
    for m in tuned.modules().values():
        m.requires_grad_(False)
    tuned.eval()
    report["loss_after"] = clip_loss(tuned, held)
    report["seconds"] = round(time.time() - t0, 2)
    tuned.info = {**tuned.info, "adapted": {k: v for k, v in report.items() if k in ("steps", "rank", "lr", "pairs")}}
    return tuned, report


__all__ = ["AdaptConf", "LowRank", "add_low_rank", "merge_low_rank", "leave_one_out_cloud", "leave_one_out_pairs",
           "pair_clips", "clip_loss", "adapt", "LORA_TARGETS"]
