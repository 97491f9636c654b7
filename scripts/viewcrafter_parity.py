"""Numerical parity of fvgen's ViewCrafter model with the official code, on CPU with tiny random
networks (no weights needed). Not a test: it needs two things fvgen does not ship,

  --official DIR   a checkout of github.com/Drexubery/ViewCrafter (read at 8408cd5a7ae6); needs `einops`
                   importable (--pydeps DIR adds a folder to sys.path, e.g. `pip install --target DIR einops`)
  --open-clip DIR  the `open_clip` folder of an unzipped open_clip_torch wheel (`pip download --no-deps
                   open_clip_torch`); torchvision and ftfy are stubbed (the modules compared do not use them)

and compares, loading the official modules' state dicts into ours strictly:
  1. the UNet (per-frame and shared image-token contexts), the resampler;
  2. the OpenCLIP vision tokens (the V2 embedder's path), the penultimate text layer, the tokenizer;
  3. the official DDIMSampler (trailing timesteps, v, dynamic rescale, CFG + guidance rescale, eta 0 and 1)
     against our ddim_sample;
  4. the official utils.diffusion_utils.image_guided_synthesis (conditional and unconditional inputs, VAE
     posterior sampling, sampler, decode) over the official UNet and resampler against our pipeline.

    python scripts/viewcrafter_parity.py --official /tmp/ViewCrafter --open-clip /tmp/oc/open_clip --pydeps /tmp/pydeps
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fvgen.videomodel.viewcrafter import (
    VARIANTS,
    CLIPTokenizer,
    ImageResampler,
    OpenCLIPTextTower,
    OpenCLIPVisionTower,
    ViewCrafterConfig,
    ViewCrafterUNet,
    build_networks,
    ddim_sample,
    dynamic_rescale_table,
    guided_v,
    make_pipeline,
    make_scheduler,
)


def load_file_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def stub(name: str, **attrs):
    m = types.ModuleType(name)
    m.__path__ = []
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def report(what: str, diff: float, tol: float, results: list) -> None:
    ok = diff <= tol
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {what}: max |diff| {diff:.2e} (tolerance {tol:.0e})")


def official_unet(UNetModel, T: int):
    return UNetModel(in_channels=8, model_channels=32, out_channels=4, num_res_blocks=1, attention_resolutions=[1, 2],
                     dropout=0.0, channel_mult=[1, 2], num_head_channels=16, transformer_depth=1, context_dim=32,
                     use_linear=True, use_checkpoint=False, temporal_conv=True, temporal_attention=True,
                     temporal_selfatt_only=True, use_relative_position=False, use_causal_attention=False,
                     temporal_length=T, addition_attention=True, image_cross_attention=True, default_fs=10,
                     fs_condition=True).eval()


TINY_UNET = {"model_channels": 32, "channel_mult": (1, 2), "attention_resolutions": (1, 2), "num_res_blocks": 1,
             "num_head_channels": 16, "context_dim": 32, "dropout": 0.0, "image_tokens_per_frame": 16}


class FakeLatentDiffusion:
    """What image_guided_synthesis and DDIMSampler read from the official VIPLatentDiffusion, built
    from the official schedule functions, the official UNet/resampler and our towers and VAE."""

    num_timesteps, parameterization, use_dynamic_rescale, uncond_type = 1000, "v", True, "empty_seq"
    device = torch.device("cpu")

    def __init__(self, ud, unet, resampler, nets, tokenizer, base_scale):
        betas = ud.rescale_zero_terminal_snr(ud.make_beta_schedule("linear", 1000, 0.00085, 0.012))
        ac = np.cumprod(1 - betas)

        def f32(a):
            return torch.tensor(a, dtype=torch.float32)

        self.betas, self.alphas_cumprod, self.alphas_cumprod_prev = f32(betas), f32(ac), f32(np.append(1.0, ac[:-1]))
        self.sqrt_alphas_cumprod, self.sqrt_one_minus_alphas_cumprod = f32(np.sqrt(ac)), f32(np.sqrt(1 - ac))
        self.scale_arr = f32(np.concatenate([np.linspace(1.0, base_scale, 400), np.full(1000, base_scale)]))
        self.model = types.SimpleNamespace(conditioning_key="hybrid")
        self.unet, self.image_proj_model, self.embedder = unet, resampler, nets["image_encoder"]
        self.text, self.vae, self.tokenizer = nets["text_encoder"], nets["vae"], tokenizer

    def get_learned_conditioning(self, prompts):
        return self.text(self.tokenizer(prompts))

    def encode_first_stage(self, x):  # perframe_ae: posterior sample x scale factor, frame by frame
        return torch.cat([self.vae.encode(x[i:i + 1]).latent_dist.sample() * 0.18215 for i in range(x.shape[0])])

    def decode_first_stage(self, z):
        b, c, t, h, w = z.shape
        z = z.transpose(1, 2).reshape(b * t, c, h, w)
        x = torch.cat([self.vae.decode(z[i:i + 1] / 0.18215).sample for i in range(b * t)])
        return x.reshape(b, t, 3, *x.shape[-2:]).transpose(1, 2)

    def apply_model(self, x, t, cond, fs=None, **kwargs):  # DiffusionWrapper, conditioning_key "hybrid"
        return self.unet(torch.cat([x] + cond["c_concat"], 1), t, context=torch.cat(cond["c_crossattn"], 1), fs=fs)

    def _coef(self, t):
        return self.sqrt_alphas_cumprod[t].view(-1, 1, 1, 1, 1), self.sqrt_one_minus_alphas_cumprod[t].view(-1, 1, 1, 1, 1)

    def predict_eps_from_z_and_v(self, x, t, v):
        a, s = self._coef(t)
        return a * v + s * x

    def predict_start_from_z_and_v(self, x, t, v):
        a, s = self._coef(t)
        return a * x - s * v


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, type=Path)
    ap.add_argument("--open-clip", required=True, type=Path)
    ap.add_argument("--pydeps", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.pydeps:
        sys.path.insert(0, str(args.pydeps))
    sys.path.insert(0, str(args.official))
    # fvgen (and diffusers) are imported above, before torchvision is stubbed for open_clip
    stub("cv2")
    stub("torchvision")
    stub("torchvision.ops")
    stub("torchvision.ops.misc", FrozenBatchNorm2d=object)
    stub("ftfy", fix_text=lambda s: s)
    stub("utils").__path__ = [str(args.official / "utils")]
    ud = load_file_module("utils.diffusion_utils", args.official / "utils" / "diffusion_utils.py")
    from lvdm.models import utils_diffusion
    from lvdm.models.samplers.ddim import DDIMSampler
    from lvdm.modules.encoders.resampler import Resampler
    from lvdm.modules.networks.openaimodel3d import UNetModel

    DDIMSampler.register_buffer = lambda self, n, a: setattr(self, n, a)  # the official one moves to CUDA
    stub("open_clip").__path__ = [str(args.open_clip)]
    for n in ("utils", "pos_embed"):
        load_file_module(f"open_clip.{n}", args.open_clip / f"{n}.py")
    oc_transformer = load_file_module("open_clip.transformer", args.open_clip / "transformer.py")
    oc_tokenizer = load_file_module("open_clip.tokenizer", args.open_clip / "tokenizer.py")
    results: list[bool] = []
    torch.manual_seed(0)

    with torch.no_grad():
        # 1. UNet and resampler
        off = official_unet(UNetModel, 3)
        for p in off.parameters():
            p.data.normal_(0, 0.05)
        ours = ViewCrafterUNet(**TINY_UNET).eval()
        ours.load_state_dict(off.state_dict(), strict=True)
        for length in (77 + 3 * 16, 77 + 20):
            x, t, fs = torch.randn(2, 8, 3, 16, 16), torch.tensor([999, 421]), torch.tensor([10, 7])
            ctx = torch.randn(2, length, 32)
            report(f"UNet, context of {length} tokens", float((off(x, t, context=ctx, fs=fs) - ours(x, t, ctx, fs)).abs().max()),
                   1e-5, results)
        kw = {"dim": 64, "depth": 2, "dim_head": 16, "heads": 4, "num_queries": 4, "embedding_dim": 48, "output_dim": 32,
              "ff_mult": 4, "video_length": 3}
        r_off, r_ours = Resampler(**kw).eval(), ImageResampler(**kw).eval()
        r_ours.load_state_dict(r_off.state_dict(), strict=True)
        z = torch.randn(2, 10, 48)
        report("resampler", float((r_off(z) - r_ours(z)).abs().max()), 1e-5, results)

        # 2. OpenCLIP towers and tokenizer
        vit = oc_transformer.VisionTransformer(image_size=28, patch_size=14, width=64, layers=2, heads=4, mlp_ratio=4.0,
                                               output_dim=32).eval()
        our_vit = OpenCLIPVisionTower(image_size=28, patch_size=14, width=64, layers=2, heads=4, output_dim=32).eval()
        our_vit.load_state_dict(vit.state_dict(), strict=True)
        img = torch.rand(2, 3, 40, 50) * 2 - 1
        x = our_vit.preprocess(img)
        y = vit.conv1(x).flatten(2).transpose(1, 2)
        y = vit.transformer(vit.ln_pre(torch.cat([vit.class_embedding.expand(2, 1, -1), y], 1) + vit.positional_embedding))
        report("vision tokens (FrozenOpenCLIPImageEmbedderV2 path)", float((our_vit(img) - y).abs().max()), 1e-5, results)
        txt = oc_transformer.TextTransformer(context_length=77, vocab_size=600, width=64, heads=4, layers=3,
                                             output_dim=32).eval()
        our_txt = OpenCLIPTextTower(vocab_size=600, width=64, layers=3, heads=4, output_dim=32).eval()
        our_txt.load_state_dict({**txt.state_dict(), "logit_scale": torch.tensor(1.0)}, strict=True)
        tokens = torch.randint(1, 600, (2, 77))
        e = txt.token_embedding(tokens) + txt.positional_embedding
        for blk in txt.transformer.resblocks[:-1]:
            e = blk(e, attn_mask=txt.attn_mask)
        report("text tower, penultimate layer + ln_final", float((our_txt(tokens) - txt.ln_final(e)).abs().max()), 1e-5,
               results)
        vocab = args.open_clip / "bpe_simple_vocab_16e6.txt.gz"
        texts = ["Rotating view of a scene", "", "A cat's 3D   rendering, don't STOP!! naive cafe"]
        tok = CLIPTokenizer(vocab)
        report("tokenizer ids", float((oc_tokenizer.SimpleTokenizer(str(vocab))(texts) != tok(texts)).sum()), 0, results)

        # 3. DDIM loop over a fake v function
        fake = FakeLatentDiffusion(utils_diffusion, None, None, {"image_encoder": None, "text_encoder": None, "vae": None},
                                   None, 0.3)
        fake.apply_model = lambda x, t, c, **k: torch.tanh(x * c + t[:, None, None, None, None] / 1000.0)
        sched = make_scheduler()
        report("alphas_cumprod", float((sched.alphas_cumprod - fake.alphas_cumprod).abs().max()), 1e-6, results)
        c = torch.tensor([0.8, 0.5]).view(2, 1, 1, 1, 1)
        uc = torch.tensor([-0.3, 0.1]).view(2, 1, 1, 1, 1)
        for eta in (0.0, 1.0):
            torch.manual_seed(1)
            a, _ = DDIMSampler(fake).sample(S=10, batch_size=2, shape=(4, 3, 5, 6), conditioning=c, verbose=False,
                                            unconditional_guidance_scale=7.5, unconditional_conditioning=uc, eta=eta,
                                            timestep_spacing="uniform_trailing", guidance_rescale=0.7)
            torch.manual_seed(1)
            x = torch.randn(2, 4, 3, 5, 6)
            sched.set_timesteps(10)

            def v_fn(x, step):
                tt = torch.full((2,), step)
                return guided_v(fake.apply_model(x, tt, c), fake.apply_model(x, tt, uc), 7.5, 0.7)

            b = ddim_sample(v_fn, x, [int(t) for t in sched.timesteps], sched.alphas_cumprod, dynamic_rescale_table(0.3),
                            eta)
            report(f"DDIM sampler, 10 steps, eta {eta}", float((a - b).abs().max()), 1e-5, results)

        # 4. the whole inference
        T = 3
        nets = build_networks(ViewCrafterConfig(
            unet=TINY_UNET,
            resampler={"dim": 32, "depth": 1, "dim_head": 8, "heads": 2, "num_queries": 16, "embedding_dim": 48,
                       "output_dim": 32, "ff_mult": 2, "video_length": T},
            vision={"image_size": 28, "patch_size": 14, "width": 48, "layers": 1, "heads": 2, "output_dim": 32},
            text={"vocab_size": 49408, "width": 32, "layers": 2, "heads": 2, "output_dim": 32},
            vae={"block_out_channels": (32, 32, 32, 32), "layers_per_block": 1}))
        unet_off = official_unet(UNetModel, T)
        for p in unet_off.parameters():
            p.data.normal_(0, 0.05)
        res_off = Resampler(dim=32, depth=1, dim_head=8, heads=2, num_queries=16, embedding_dim=48, output_dim=32,
                            ff_mult=2, video_length=T).eval()
        nets["unet"].load_state_dict(unet_off.state_dict())
        nets["resampler"].load_state_dict(res_off.state_dict())
        model = FakeLatentDiffusion(utils_diffusion, unet_off, res_off, nets, tok, 0.3)
        pipe = make_pipeline(nets, VARIANTS["1024"], tokenizer=tok)
        videos = torch.rand(1, 3, T, 32, 48, generator=torch.Generator().manual_seed(5)) * 2 - 1
        for eta in (1.0, 0.0):
            torch.manual_seed(11)
            a = ud.image_guided_synthesis(model, ["Rotating view of a scene"], videos, [1, 4, T, 4, 6], 1, 5, eta, 7.5,
                                          None, 10, True, False, "uniform_trailing", 0.7, [0])[:, 0]
            torch.manual_seed(11)  # the same global draws in the same order: VAE posteriors, x_T, step noise
            b = pipe(videos, videos[:, :, 0], num_inference_steps=5, guidance_scale=7.5, guidance_rescale=0.7, eta=eta,
                     fps=10)
            # the official run_diffusion clamps to [-1, 1] after image_guided_synthesis
            report(f"whole inference (image_guided_synthesis), 5 steps, eta {eta}",
                   float((a.clamp(-1, 1) - b).abs().max()), 1e-4, results)
    print(f"{sum(results)}/{len(results)} comparisons within tolerance")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
