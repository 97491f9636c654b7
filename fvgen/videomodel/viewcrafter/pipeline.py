"""Sampling ViewCrafter: the schedule, DDIM with the official dynamic rescale, CFG with guidance
rescale, as a diffusers-style pipeline over our networks and a diffusers ``DDIMScheduler``.

What the official inference does (``utils/diffusion_utils.image_guided_synthesis`` and
``lvdm/models/samplers/ddim.py``, Drexubery/ViewCrafter@8408cd5):

- schedule: betas linear in sqrt space 0.00085 -> 0.012 over 1000 steps, rescaled to zero terminal
  SNR; the network predicts v;
- DDIM on "uniform_trailing" timesteps (999, 979, ..., 19 for 50 steps), eta 1.0; the alpha after
  the last step is alphas_cumprod[0]; every x0 prediction is multiplied by
  scale(t_prev) / scale(t), where scale is 1 -> base_scale linearly over t in [0, 400) then
  base_scale (0.7 for the 512 model, 0.3 for the 1024 model; the model was trained on latents
  multiplied by scale(t));
- conditional inputs: context = [text tokens of the prompt ("Rotating view of a scene") ; resampler
  tokens of the CLIP tokens of the condition image], concat latents = VAE latents of the renders;
- unconditional inputs: text tokens of "" and resampler tokens of an all-zero condition image
  (mid-grey in [-1, 1]); the same concat latents;
- v = v_u + s (v_c - v_u), then guidance rescale (0.7): std-matched to v_c per sample, mixed;
- fs (frame stride) 10.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, DiffusionPipeline

from ...core.errors import FvgenError
from .clip import CLIPTokenizer, OpenCLIPTextTower, OpenCLIPVisionTower
from .resampler import ImageResampler
from .unet import ViewCrafterUNet
from .vae import decode_latents, encode_frames

DEFAULT_PROMPT = "Rotating view of a scene"


@dataclass(frozen=True)
class ViewCrafterVariant:
    """One published model: its pixel size, clip length and dynamic-rescale base scale."""

    name: str
    height: int
    width: int
    frames: int
    base_scale: float
    fs: int = 10


VARIANTS = {
    "512": ViewCrafterVariant("512", 320, 512, 16, 0.7),  # ViewCrafter_16, configs/inference_pvd_512.yaml
    "1024": ViewCrafterVariant("1024", 576, 1024, 25, 0.3),  # ViewCrafter_25, configs/inference_pvd_1024.yaml
}


def make_scheduler(num_train_timesteps: int = 1000) -> DDIMScheduler:
    """diffusers' DDIM configured as the official model: 'scaled_linear' (linear in sqrt space)
    0.00085-0.012, zero-terminal-SNR rescale, v-prediction, trailing spacing, final alpha
    alphas_cumprod[0], no clipping."""
    return DDIMScheduler(num_train_timesteps=num_train_timesteps, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", rescale_betas_zero_snr=True, prediction_type="v_prediction",
                         timestep_spacing="trailing", set_alpha_to_one=False, clip_sample=False, steps_offset=0)


def dynamic_rescale_table(base_scale: float, turning_step: int = 400, num_train_timesteps: int = 1000) -> torch.Tensor:
    """The official ``scale_arr``: linspace(1, base_scale, turning_step) then base_scale (length
    turning_step + T); indexed by timestep."""
    return torch.cat([torch.linspace(1.0, base_scale, turning_step, dtype=torch.float64),
                      torch.full((num_train_timesteps,), base_scale, dtype=torch.float64)]).float()


def check_timesteps(timesteps: Sequence[int], num_train_timesteps: int = 1000) -> list[int]:
    ts = [int(t) for t in timesteps]
    if not ts or any(not 0 <= t < num_train_timesteps for t in ts) or any(a <= b for a, b in itertools.pairwise(ts)):
        raise FvgenError(f"timesteps must be strictly decreasing integers in [0, {num_train_timesteps}), got {ts[:6]}")
    return ts


def rescale_guidance(guided: torch.Tensor, cond: torch.Tensor, phi: float) -> torch.Tensor:
    """Guidance rescale (Lin et al. 2023, Sec. 3.4): match the per-sample std of ``cond``, mix by phi."""
    if phi <= 0:
        return guided
    dims = list(range(1, guided.ndim))
    # the clamp only matters for an all-constant prediction (e.g. a zero-initialised network)
    rescaled = guided * (cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True).clamp_min(1e-12))
    return phi * rescaled + (1 - phi) * guided


def ddim_step(alphas_cumprod: torch.Tensor, v: torch.Tensor, t: int, t_prev: int, x: torch.Tensor, eta: float,
              noise: torch.Tensor | None, scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step from v: (x_{t_prev}, x0 prediction). ``t_prev`` -1 means the end (alpha =
    alphas_cumprod[0]); ``scale`` is the dynamic-rescale table (None: no rescale)."""
    a_t = alphas_cumprod[t].double()
    a_prev = alphas_cumprod[max(t_prev, 0)].double()
    x64, v64 = x.double(), v.double()
    x0 = a_t.sqrt() * x64 - (1 - a_t).sqrt() * v64
    eps = a_t.sqrt() * v64 + (1 - a_t).sqrt() * x64
    if scale is not None:
        x0 = x0 * (scale[max(t_prev, 0)].double() / scale[t].double())
    sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp(min=0).sqrt()
    x_prev = a_prev.sqrt() * x0 + (1 - a_prev - sigma ** 2).clamp(min=0).sqrt() * eps
    if eta > 0:
        if noise is None:
            raise ValueError("eta > 0 needs noise")
        x_prev = x_prev + sigma * noise.double()
    return x_prev.to(x.dtype), x0.to(x.dtype)


def guided_v(v_cond: torch.Tensor, v_uncond: torch.Tensor, guidance_scale: float, guidance_rescale: float) -> torch.Tensor:
    """Classifier-free guidance on v, then guidance rescale (the official order)."""
    return rescale_guidance(v_uncond + guidance_scale * (v_cond - v_uncond), v_cond, guidance_rescale)


def randn(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Gaussian noise drawn on the generator's device (reproducible across model devices)."""
    return torch.randn(shape, generator=generator, device=generator.device if generator is not None else device).to(device)


def ddim_sample(v_fn: Callable[[torch.Tensor, int], torch.Tensor], x: torch.Tensor, timesteps: Sequence[int],
                alphas_cumprod: torch.Tensor, scale: torch.Tensor | None, eta: float = 1.0,
                generator: torch.Generator | None = None,
                callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """The official DDIM loop: x_T [B, C, T, h, w] -> x_0, with ``v_fn(x, t)`` the (guided) v
    prediction; fresh noise is drawn after each network call when eta > 0."""
    ts = list(timesteps)
    for i, step in enumerate(ts):
        v = v_fn(x, step)
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        noise = randn(x.shape, generator, x.device) if eta > 0 else None
        x, _ = ddim_step(alphas_cumprod, v, step, t_prev, x, eta, noise, scale)
        if callback is not None:
            callback(i + 1, len(ts))
    return x


@dataclass
class ViewCrafterConditions:
    """Inputs of the UNet besides the noisy latent: concat [B, 4, T, h, w] (render latents),
    cond / uncond [B, 77 + L, 1024] (text then image tokens; uncond None without guidance), fps [B]."""

    concat: torch.Tensor
    cond: torch.Tensor
    uncond: torch.Tensor | None
    fps: torch.Tensor


class ViewCrafterPipeline(DiffusionPipeline):
    """renders [B, 3, T, H, W] and a condition image [B, 3, H, W], both in [-1, 1] -> frames
    [B, 3, T, H, W] in [-1, 1] (``output_type="latent"``: the final latents [B, 4, T, H/8, W/8]).

    Text: ``tokenizer`` + ``text_encoder``, or ``prompt_embeds`` / ``negative_prompt_embeds``
    [B, 77, 1024] passed to the call."""

    model_cpu_offload_seq = "text_encoder->image_encoder->resampler->vae->unet->vae"

    def __init__(self, unet: ViewCrafterUNet, vae, resampler: ImageResampler, image_encoder: OpenCLIPVisionTower,
                 scheduler: DDIMScheduler, text_encoder: OpenCLIPTextTower | None = None,
                 tokenizer: CLIPTokenizer | None = None, base_scale: float = 0.7):
        super().__init__()
        for net in (unet, vae, resampler, image_encoder, text_encoder):
            if net is not None:
                net.eval()  # sampling: dropout off (the UNet has dropout 0.1)
        self.register_modules(unet=unet, vae=vae, resampler=resampler, image_encoder=image_encoder,
                              scheduler=scheduler, text_encoder=text_encoder)
        self.tokenizer = tokenizer  # ours, not a diffusers component
        self.base_scale = float(base_scale)
        self._prompt_cache: dict[tuple, torch.Tensor] = {}
        # prompt -> [1, 77, D] text tokens computed once (a ViewCrafter model folder stores those of
        # its prompt and of ""), so such a pipeline runs without the text tower and its vocabulary
        self.stored_prompts: dict[str, torch.Tensor] = {}

    @property
    def model_dtype(self) -> torch.dtype:
        return self.unet.out[-1].weight.dtype

    @property
    def model_device(self) -> torch.device:
        return self.unet.out[-1].weight.device

    # --- inputs ---------------------------------------------------------------------------------
    def check_inputs(self, renders: torch.Tensor, image: torch.Tensor, guidance_scale: float, eta: float,
                     prompt_embeds: torch.Tensor | None, negative_prompt_embeds: torch.Tensor | None,
                     prompt: str = DEFAULT_PROMPT) -> None:
        """One-line errors for inputs the model cannot take."""
        if renders.ndim != 5 or renders.shape[1] != 3:
            raise FvgenError(f"renders must be [B, 3, T, H, W], got {list(renders.shape)}")
        b, _, _t, h, w = renders.shape
        if image.ndim != 4 or image.shape[0] != b or image.shape[1] != 3:
            raise FvgenError(f"image must be [B={b}, 3, H, W], got {list(image.shape)}")
        mult = 8 * self.unet.downsampling_factor
        if h % mult or w % mult:
            raise FvgenError(f"frame size {w}x{h} must be a multiple of {mult} (the VAE x UNet downsampling)")
        if not (renders.min() >= -1.001 and renders.max() <= 1.001):
            raise FvgenError("renders must be in [-1, 1]")
        if eta < 0:
            raise FvgenError(f"eta must be >= 0, got {eta}")
        ctx = self.unet.config.context_dim
        for name, e in (("prompt_embeds", prompt_embeds), ("negative_prompt_embeds", negative_prompt_embeds)):
            if e is not None and (e.ndim != 3 or e.shape[0] not in (1, b) or e.shape[2] != ctx):
                raise FvgenError(f"{name} must be [B, L, {ctx}], got {list(e.shape)}")
        needs_text = (prompt_embeds is None and prompt not in self.stored_prompts) or \
            (guidance_scale != 1 and negative_prompt_embeds is None and "" not in self.stored_prompts)
        if needs_text and (self.text_encoder is None or self.tokenizer is None):
            raise FvgenError("the ViewCrafter text encoder needs the CLIP tokenizer vocabulary "
                                 "(pass --clip-vocab PATH/bpe_simple_vocab_16e6.txt.gz) or precomputed prompt embeddings")

    @torch.no_grad()
    def encode_prompt(self, prompt: str, batch: int) -> torch.Tensor:
        """[batch, 77, 1024] penultimate-layer OpenCLIP text tokens (cached per prompt)."""
        if prompt in self.stored_prompts:
            return self.stored_prompts[prompt].to(self.model_device, self.model_dtype).expand(batch, -1, -1)
        key = (prompt, self.model_device, self.model_dtype)
        if key not in self._prompt_cache:
            tokens = self.tokenizer([prompt]).to(self.model_device)
            self._prompt_cache[key] = self.text_encoder(tokens).to(self.model_dtype)
        return self._prompt_cache[key].expand(batch, -1, -1)

    @torch.no_grad()
    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> resampler tokens [B, 256, 1024]."""
        tokens = self.image_encoder(image.to(self.model_device))
        return self.resampler(tokens.to(self.model_dtype))

    @torch.no_grad()
    def prepare_conditions(self, renders: torch.Tensor, image: torch.Tensor, prompt: str = DEFAULT_PROMPT,
                           guidance: bool = True, fps: int = 10, generator: torch.Generator | None = None,
                           prompt_embeds: torch.Tensor | None = None,
                           negative_prompt_embeds: torch.Tensor | None = None) -> ViewCrafterConditions:
        """The official conditional (and, with ``guidance``, unconditional) inputs of a clip:
        renders [B, 3, T, H, W] and image [B, 3, H, W] in [-1, 1]."""
        device, dtype = self.model_device, self.model_dtype
        b = renders.shape[0]
        text = prompt_embeds.to(device, dtype).expand(b, -1, -1) if prompt_embeds is not None \
            else self.encode_prompt(prompt, b)
        cond = torch.cat([text, self.encode_image(image)], dim=1)
        concat = encode_frames(self.vae, renders.to(device), generator=generator).to(dtype)
        uncond = None
        if guidance:
            null_text = negative_prompt_embeds.to(device, dtype).expand(b, -1, -1) \
                if negative_prompt_embeds is not None else self.encode_prompt("", b)
            uncond = torch.cat([null_text, self.encode_image(torch.zeros_like(image))], dim=1)
        return ViewCrafterConditions(concat, cond, uncond, torch.full((b,), fps, device=device))

    def predict_v(self, x: torch.Tensor, timestep: int | torch.Tensor, conditions: ViewCrafterConditions,
                  guidance_scale: float = 7.5, guidance_rescale: float = 0.7, batch_cfg: bool = True) -> torch.Tensor:
        """The (guided) v prediction for noisy latents x [B, 4, T, h, w] at ``timestep`` (an int or
        [B]), float32; what a distillation queries from the teacher (no no_grad here)."""
        dtype, device = self.model_dtype, self.model_device
        b = x.shape[0]
        tt = torch.as_tensor(timestep, device=device).reshape(-1).expand(b)
        inp = torch.cat([x.to(device), conditions.concat], dim=1).to(dtype)
        c, u, fps = conditions.cond, conditions.uncond, conditions.fps
        if guidance_scale == 1.0 or u is None:
            return self.unet(inp, tt, c, fps).float()
        if batch_cfg:
            v_u, v_c = self.unet(inp.repeat(2, 1, 1, 1, 1), tt.repeat(2), torch.cat([u, c]), fps.repeat(2)).float().chunk(2)
        else:
            v_c = self.unet(inp, tt, c, fps).float()
            v_u = self.unet(inp, tt, u, fps).float()
        return guided_v(v_c, v_u, guidance_scale, guidance_rescale)

    # --- sampling -------------------------------------------------------------------------------
    def timesteps_for(self, num_inference_steps: int) -> list[int]:
        self.scheduler.set_timesteps(num_inference_steps)
        return [int(t) for t in self.scheduler.timesteps]

    @torch.no_grad()
    def __call__(self, renders: torch.Tensor, image: torch.Tensor, prompt: str = DEFAULT_PROMPT,
                 num_inference_steps: int = 50, timesteps: Sequence[int] | None = None,
                 guidance_scale: float = 7.5, guidance_rescale: float = 0.7, eta: float = 1.0, fps: int = 10,
                 generator: torch.Generator | None = None, prompt_embeds: torch.Tensor | None = None,
                 negative_prompt_embeds: torch.Tensor | None = None, latents: torch.Tensor | None = None,
                 output_type: str = "pt", batch_cfg: bool = True,
                 callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
        self.check_inputs(renders, image, guidance_scale, eta, prompt_embeds, negative_prompt_embeds, prompt)
        device = self.model_device
        b, _, t, h, w = renders.shape
        ts = check_timesteps(timesteps if timesteps is not None else self.timesteps_for(num_inference_steps),
                             self.scheduler.config.num_train_timesteps)
        cfg = guidance_scale != 1.0

        conditions = self.prepare_conditions(renders, image, prompt, cfg, fps, generator, prompt_embeds,
                                             negative_prompt_embeds)
        alphas = self.scheduler.alphas_cumprod.to(device)
        scale = dynamic_rescale_table(self.base_scale, num_train_timesteps=len(alphas)).to(device)
        shape = (b, self.unet.config.out_channels, t, h // 8, w // 8)
        x = latents.to(device, torch.float32) if latents is not None else randn(shape, generator, device)

        def v_fn(x: torch.Tensor, step: int) -> torch.Tensor:
            return self.predict_v(x, step, conditions, guidance_scale, guidance_rescale, batch_cfg)

        x = ddim_sample(v_fn, x, ts, alphas, scale, eta, generator, callback)
        if output_type == "latent":
            return x
        return decode_latents(self.vae, x)
