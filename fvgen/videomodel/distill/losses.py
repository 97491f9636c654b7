r"""The distillation losses: non-saturating GAN, the fake-score network's diffusion loss, and the
distribution-matching (DMD) student gradient for FVGen's *softened* reverse KL.

The per-sample weight of the softened reverse KL
================================================

Notation: ``p`` = p_real (the data, whose score the frozen teacher gives), ``q_θ`` = p_fake (the
student's samples ``x = G_θ(z)``, ``z ~ N(0, I)``), ``m = (p + q) / 2``, scores ``s_p = ∇_x log p``,
``s_q = ∇_x log q``, density ratio ``r = p / q``, and the optimal discriminator of the
non-saturating GAN ``D* = p / (p + q) = r / (1 + r)`` (its logit is ``log r``).

1. *A lemma.* For any fixed function ``f`` (not depending on θ),
   ``∂/∂θ ∫ q_θ f dx = ∂/∂θ E_z[f(G_θ(z))] = E_z[∇_x f(x) · ∂G_θ(z)/∂θ]`` (reparameterisation).
   Write ``E_z[g(x) · ∂x/∂θ]`` as ``⟨g⟩`` below.

2. *Plain reverse KL* (DMD): ``L(θ) = ∫ q log(q / p) dx``. Differentiating,
   ``∂L/∂θ = ∫ ∂q/∂θ · log(q / p) dx + ∫ q · (∂q/∂θ) / q dx``; the last term is
   ``∂/∂θ ∫ q = 0``. The first is the lemma with ``f = log q - log p`` held fixed:
   ``∂L/∂θ = ⟨s_q - s_p⟩`` -- DMD's gradient, fake score minus real score, weight 1.

3. *Softened reverse KL* (FVGen): ``L_s(θ) = KL(m || p) = ∫ m log(m / p) dx``, ``∂m/∂θ = ½ ∂q/∂θ``.
   Differentiating, ``∂L_s/∂θ = ∫ ∂m/∂θ · log(m / p) dx + ∫ ∂m/∂θ dx``; again the last term is
   zero, and the lemma with ``f = log m - log p`` gives ``∂L_s/∂θ = ½ ⟨∇ log m - s_p⟩``. Now
   ``∇ log m = (∇p + ∇q) / (p + q) = (p s_p + q s_q) / (p + q) = D* s_p + (1 - D*) s_q``, so
   ``∇ log m - s_p = (1 - D*) (s_q - s_p)``, and

       ∂L_s/∂θ = ½ ⟨ w(x) (s_q - s_p) ⟩,   w = 1 - D* = q / (p + q) = 1 / (1 + r).

   The weight is **1 / (1 + r)**, not ``1 / r``: ``1 / r`` is only its limit where the student is
   already far more likely than the data (``r → 0`` is where ``1 / r`` explodes, while the true
   weight tends to 1: there the softened KL pushes like plain DMD; where ``r → ∞`` -- modes the
   student under-covers -- it fades as ``1 / r``, so a sample in a region the data favours is not
   pushed further, which is what tempers DMD's mode-seeking). ``tests/videomodel/test_distill.py``
   checks both identities on 1-D Gaussians against autograd of the closed-form / quadrature KLs,
   and that ``1 / r`` does not match.

4. *With diffusion.* DMD applies 2 and 3 to the noised marginals ``p_t`` and ``q_t`` at a random
   timestep (the scores are only known there): with ``x_t = √ᾱ_t x + √(1-ᾱ_t) ε``,
   ``s(x_t) = (√ᾱ_t x̂0(x_t) - x_t) / (1 - ᾱ_t)``, so ``s_q - s_p = √ᾱ_t / (1-ᾱ_t) · (x̂0_fake - x̂0_real)``:
   in our x0-predicting models the gradient is the fake minus the real (teacher) x0 prediction.
   The weight uses ``r_t = p_t / q_t`` at ``x_t``, from the discriminator, which runs on noised
   inputs at the same ``t``: ``1 - D = sigmoid(-logit)``. The positive factor ``√ᾱ_t / (1-ᾱ_t)``
   is replaced, as in DMD (Yin et al. 2024, eq. 8), by ``1 / mean|x0 - x̂0_real|`` per sample.
   We scale ``w`` by 2 (a constant, like the ½ it cancels) so that where the two distributions
   agree (``r = 1``) the softened gradient equals plain DMD's: the two variants then share a
   learning rate and differ only by the weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def softened_kl_weight(disc_logit: torch.Tensor) -> torch.Tensor:
    """Per-sample weight ``2 (1 - D) = 2 / (1 + r)`` of the softened reverse-KL gradient, from the
    discriminator's logits [B] (``logit = log r`` at the non-saturating GAN's optimum)."""
    return 2.0 * torch.sigmoid(-disc_logit.float())


def _per_sample(x: torch.Tensor) -> tuple:
    return (-1,) + (1,) * (x.ndim - 1)


def dmd_loss(x0: torch.Tensor, x0_fake: torch.Tensor, x0_real: torch.Tensor,
             weight: torch.Tensor | None = None, eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """The distribution-matching surrogate loss of student samples ``x0`` [B, ...] (with grad):
    its gradient w.r.t. ``x0`` is ``weight * (x0_fake - x0_real) / mean|x0 - x0_real| / numel``.

    ``x0_fake``, ``x0_real``: the fake-score network's and the teacher's x0 predictions on the
    noised samples (no grad). ``weight`` [B]: :func:`softened_kl_weight` (softened KL) or None
    (plain DMD, weight 1). Returns (loss, the per-element gradient direction, detached)."""
    x0_fake, x0_real = x0_fake.detach().float(), x0_real.detach().float()
    xf = x0.float()
    dims = list(range(1, x0.ndim))
    norm = (xf.detach() - x0_real).abs().mean(dims, keepdim=True).clamp_min(eps)
    grad = (x0_fake - x0_real) / norm
    if weight is not None:
        grad = grad * weight.detach().float().reshape(_per_sample(grad))
    grad = torch.nan_to_num(grad)
    # 0.5 |x0 - sg(x0 - grad)|^2 has gradient ``grad`` w.r.t. x0 (DMD's implementation trick)
    loss = 0.5 * F.mse_loss(xf, (xf - grad).detach(), reduction="sum") / x0.numel()
    return loss, grad


def disc_loss(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN, discriminator side: ``softplus(-l_real) + softplus(l_fake)``, whose
    optimum is ``sigmoid(l) = p_real / (p_real + p_fake)``, i.e. ``l = log r``."""
    return F.softplus(-logit_real.float()).mean() + F.softplus(logit_fake.float()).mean()


def gen_loss(logit_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN, generator side: ``softplus(-l_fake) = -log D(G(z))``."""
    return F.softplus(-logit_fake.float()).mean()
