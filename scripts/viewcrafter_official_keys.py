"""Write fvgen/videomodel/viewcrafter/official_keys.json.gz: every tensor name and shape of the
official ViewCrafter checkpoints' ``state_dict`` (ViewCrafter_16 at 512x320 and ViewCrafter_25 at
1024x576 share one architecture), enumerated by following the constructors of the official code
(Drexubery/ViewCrafter at commit 8408cd5a7ae66b7f6e8cdfda0b3d0c2996f8646d: configs/inference_pvd_*.yaml,
lvdm/modules/networks/openaimodel3d.py, lvdm/modules/attention.py, lvdm/modules/encoders/resampler.py,
lvdm/modules/networks/ae_modules.py, lvdm/modules/encoders/condition.py with open-clip-torch 2.17.1's
ViT-H-14, lvdm/models/ddpm3d.py).

This enumerator builds no network: it lists names from the official loops, so that the test
comparing it with our modules' ``state_dict()`` checks two independent derivations.

    python scripts/viewcrafter_official_keys.py            # rewrites the file
    python scripts/viewcrafter_official_keys.py --check    # exits 1 if the file differs
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

COMMIT = "8408cd5a7ae66b7f6e8cdfda0b3d0c2996f8646d"
OUT = Path(__file__).resolve().parents[1] / "fvgen/videomodel/viewcrafter/official_keys.json.gz"

# configs/inference_pvd_512.yaml == inference_pvd_1024.yaml for every shape-defining value
UNET = {"in_channels": 8, "out_channels": 4, "model_channels": 320, "attention_resolutions": (4, 2, 1),
        "num_res_blocks": 2, "channel_mult": (1, 2, 4, 4), "num_head_channels": 64, "transformer_depth": 1,
        "context_dim": 1024}
VAE = {"ch": 128, "ch_mult": (1, 2, 4, 4), "num_res_blocks": 2, "z_channels": 4, "embed_dim": 4, "in_channels": 3,
       "out_ch": 3}
RESAMPLER = {"dim": 1024, "depth": 4, "dim_head": 64, "heads": 12, "num_queries": 16, "embedding_dim": 1280,
             "output_dim": 1024, "ff_mult": 4, "video_length": 16}
CLIP_VISION = {"width": 1280, "layers": 32, "patch": 14, "image": 224, "embed_dim": 1024}
CLIP_TEXT = {"width": 1024, "layers": 24, "vocab": 49408, "context": 77, "embed_dim": 1024}
SCHEDULE_BUFFERS = ["betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                    "posterior_mean_coef1", "posterior_mean_coef2"]


def linear(out: dict, name: str, fan_in: int, fan_out: int, bias: bool = True):
    out[f"{name}.weight"] = [fan_out, fan_in]
    if bias:
        out[f"{name}.bias"] = [fan_out]


def norm(out: dict, name: str, c: int):
    out[f"{name}.weight"] = [c]
    out[f"{name}.bias"] = [c]


def conv(out: dict, name: str, cin: int, cout: int, kernel: tuple):
    out[f"{name}.weight"] = [cout, cin, *kernel]
    out[f"{name}.bias"] = [cout]


# ---- UNet (openaimodel3d.UNetModel + attention.py) -------------------------------------------------
def unet_resblock(out, p, cin, cout, emb):
    norm(out, f"{p}.in_layers.0", cin)
    conv(out, f"{p}.in_layers.2", cin, cout, (3, 3))
    linear(out, f"{p}.emb_layers.1", emb, cout)
    norm(out, f"{p}.out_layers.0", cout)
    conv(out, f"{p}.out_layers.3", cout, cout, (3, 3))
    if cin != cout:
        conv(out, f"{p}.skip_connection", cin, cout, (1, 1))
    for i in (1, 2, 3, 4):  # TemporalConvBlock: conv1 = [GN, SiLU, Conv3d], conv2-4 = [GN, SiLU, Dropout, Conv3d]
        norm(out, f"{p}.temopral_conv.conv{i}.0", cout)
        conv(out, f"{p}.temopral_conv.conv{i}.{2 if i == 1 else 3}", cout, cout, (3, 1, 1))


def transformer_block(out, p, inner, context_dim, image_cross):
    for a in ("attn1", "attn2"):
        kv_in = context_dim if (a == "attn2" and context_dim) else inner
        linear(out, f"{p}.{a}.to_q", inner, inner, bias=False)
        linear(out, f"{p}.{a}.to_k", kv_in, inner, bias=False)
        linear(out, f"{p}.{a}.to_v", kv_in, inner, bias=False)
        linear(out, f"{p}.{a}.to_out.0", inner, inner)
        if a == "attn2" and image_cross:
            linear(out, f"{p}.{a}.to_k_ip", kv_in, inner, bias=False)
            linear(out, f"{p}.{a}.to_v_ip", kv_in, inner, bias=False)
    linear(out, f"{p}.ff.net.0.proj", inner, inner * 4 * 2)  # GEGLU
    linear(out, f"{p}.ff.net.2", inner * 4, inner)
    for n in ("norm1", "norm2", "norm3"):
        norm(out, f"{p}.{n}", inner)


def unet_spatial(out, p, ch, heads, d_head, ctx):
    inner = heads * d_head
    norm(out, f"{p}.norm", ch)
    linear(out, f"{p}.proj_in", ch, inner)  # use_linear: true
    transformer_block(out, f"{p}.transformer_blocks.0", inner, ctx, image_cross=True)
    linear(out, f"{p}.proj_out", inner, ch)


def unet_temporal(out, p, ch, heads, d_head, use_linear=True):
    inner = heads * d_head
    norm(out, f"{p}.norm", ch)
    if use_linear:
        linear(out, f"{p}.proj_in", ch, inner)
        linear(out, f"{p}.proj_out", inner, ch)
    else:  # Conv1d, kernel 1
        conv(out, f"{p}.proj_in", ch, inner, (1,))
        conv(out, f"{p}.proj_out", inner, ch, (1,))
    transformer_block(out, f"{p}.transformer_blocks.0", inner, None, image_cross=False)  # only_self_att


def unet_keys(c=UNET) -> dict:
    out: dict = {}
    mc, emb = c["model_channels"], c["model_channels"] * 4
    linear(out, "time_embed.0", mc, emb)
    linear(out, "time_embed.2", emb, emb)
    linear(out, "fps_embedding.0", mc, emb)
    linear(out, "fps_embedding.2", emb, emb)
    conv(out, "input_blocks.0.0", c["in_channels"], mc, (3, 3))
    unet_temporal(out, "init_attn.0", mc, 8, c["num_head_channels"], use_linear=False)  # n_heads=8 hard-coded
    chans, ch, ds, idx = [mc], mc, 1, 1
    for level, mult in enumerate(c["channel_mult"]):
        for _ in range(c["num_res_blocks"]):
            unet_resblock(out, f"input_blocks.{idx}.0", ch, mult * mc, emb)
            ch = mult * mc
            if ds in c["attention_resolutions"]:
                unet_spatial(out, f"input_blocks.{idx}.1", ch, ch // 64, 64, c["context_dim"])
                unet_temporal(out, f"input_blocks.{idx}.2", ch, ch // 64, 64)
            chans.append(ch)
            idx += 1
        if level != len(c["channel_mult"]) - 1:
            conv(out, f"input_blocks.{idx}.0.op", ch, ch, (3, 3))
            chans.append(ch)
            idx += 1
            ds *= 2
    unet_resblock(out, "middle_block.0", ch, ch, emb)
    unet_spatial(out, "middle_block.1", ch, ch // 64, 64, c["context_dim"])
    unet_temporal(out, "middle_block.2", ch, ch // 64, 64)
    unet_resblock(out, "middle_block.3", ch, ch, emb)
    idx = 0
    for level, mult in list(enumerate(c["channel_mult"]))[::-1]:
        for i in range(c["num_res_blocks"] + 1):
            unet_resblock(out, f"output_blocks.{idx}.0", ch + chans.pop(), mult * mc, emb)
            ch = mult * mc
            n = 1
            if ds in c["attention_resolutions"]:
                unet_spatial(out, f"output_blocks.{idx}.1", ch, ch // 64, 64, c["context_dim"])
                unet_temporal(out, f"output_blocks.{idx}.2", ch, ch // 64, 64)
                n = 3
            if level and i == c["num_res_blocks"]:
                conv(out, f"output_blocks.{idx}.{n}.conv", ch, ch, (3, 3))
                ds //= 2
            idx += 1
    norm(out, "out.0", ch)
    conv(out, "out.2", mc, c["out_channels"], (3, 3))
    return out


# ---- first stage (ae_modules Encoder/Decoder, ldm naming) -----------------------------------------
def vae_resnet(out, p, cin, cout):
    norm(out, f"{p}.norm1", cin)
    conv(out, f"{p}.conv1", cin, cout, (3, 3))
    norm(out, f"{p}.norm2", cout)
    conv(out, f"{p}.conv2", cout, cout, (3, 3))
    if cin != cout:
        conv(out, f"{p}.nin_shortcut", cin, cout, (1, 1))


def vae_mid(out, p, c):
    vae_resnet(out, f"{p}.block_1", c, c)
    norm(out, f"{p}.attn_1.norm", c)
    for n in ("q", "k", "v", "proj_out"):
        conv(out, f"{p}.attn_1.{n}", c, c, (1, 1))
    vae_resnet(out, f"{p}.block_2", c, c)


def vae_keys(c=VAE) -> dict:
    out: dict = {}
    ch, mult, nrb = c["ch"], c["ch_mult"], c["num_res_blocks"]
    conv(out, "encoder.conv_in", c["in_channels"], ch, (3, 3))
    in_mult = (1,) + tuple(mult)
    for i in range(len(mult)):
        block_in = ch * in_mult[i]
        for j in range(nrb):
            vae_resnet(out, f"encoder.down.{i}.block.{j}", block_in, ch * mult[i])
            block_in = ch * mult[i]
        if i != len(mult) - 1:
            conv(out, f"encoder.down.{i}.downsample.conv", block_in, block_in, (3, 3))
    vae_mid(out, "encoder.mid", block_in)
    norm(out, "encoder.norm_out", block_in)
    conv(out, "encoder.conv_out", block_in, 2 * c["z_channels"], (3, 3))
    block_in = ch * mult[-1]
    conv(out, "decoder.conv_in", c["z_channels"], block_in, (3, 3))
    vae_mid(out, "decoder.mid", block_in)
    for i in reversed(range(len(mult))):
        for j in range(nrb + 1):
            vae_resnet(out, f"decoder.up.{i}.block.{j}", block_in, ch * mult[i])
            block_in = ch * mult[i]
        if i != 0:
            conv(out, f"decoder.up.{i}.upsample.conv", block_in, block_in, (3, 3))
    norm(out, "decoder.norm_out", block_in)
    conv(out, "decoder.conv_out", block_in, c["out_ch"], (3, 3))
    conv(out, "quant_conv", 2 * c["z_channels"], 2 * c["embed_dim"], (1, 1))
    conv(out, "post_quant_conv", c["embed_dim"], c["z_channels"], (1, 1))
    return out


# ---- OpenCLIP ViT-H-14 (open_clip 2.17.1) -----------------------------------------------------------
def clip_blocks(out, p, width, layers):
    for i in range(layers):
        b = f"{p}.resblocks.{i}"
        norm(out, f"{b}.ln_1", width)
        out[f"{b}.attn.in_proj_weight"] = [3 * width, width]
        out[f"{b}.attn.in_proj_bias"] = [3 * width]
        linear(out, f"{b}.attn.out_proj", width, width)
        norm(out, f"{b}.ln_2", width)
        linear(out, f"{b}.mlp.c_fc", width, 4 * width)
        linear(out, f"{b}.mlp.c_proj", 4 * width, width)


def clip_text_leftovers(out, t=CLIP_TEXT):
    """What both embedders keep of the text half besides ``transformer`` (``attn_mask`` is a
    non-persistent buffer)."""
    out["token_embedding.weight"] = [t["vocab"], t["width"]]
    out["positional_embedding"] = [t["context"], t["width"]]
    norm(out, "ln_final", t["width"])
    out["text_projection"] = [t["width"], t["embed_dim"]]
    out["logit_scale"] = []


def clip_text_keys(t=CLIP_TEXT) -> dict:
    """FrozenOpenCLIPEmbedder: ``del model.visual``."""
    out: dict = {}
    clip_blocks(out, "transformer", t["width"], t["layers"])
    clip_text_leftovers(out, t)
    return out


def clip_image_keys(v=CLIP_VISION) -> dict:
    """FrozenOpenCLIPImageEmbedderV2: ``del model.transformer`` (the text embeddings stay)."""
    out: dict = {}
    w, grid = v["width"], v["image"] // v["patch"]
    out["visual.class_embedding"] = [w]
    out["visual.positional_embedding"] = [grid * grid + 1, w]
    out["visual.proj"] = [w, v["embed_dim"]]
    out["visual.conv1.weight"] = [w, 3, v["patch"], v["patch"]]
    norm(out, "visual.ln_pre", w)
    clip_blocks(out, "visual.transformer", w, v["layers"])
    norm(out, "visual.ln_post", w)
    clip_text_leftovers(out)
    return out


def resampler_keys(c=RESAMPLER) -> dict:
    out: dict = {}
    d, inner = c["dim"], c["dim_head"] * c["heads"]
    out["latents"] = [1, c["num_queries"] * c["video_length"], d]
    linear(out, "proj_in", c["embedding_dim"], d)
    linear(out, "proj_out", d, c["output_dim"])
    norm(out, "norm_out", c["output_dim"])
    for i in range(c["depth"]):
        norm(out, f"layers.{i}.0.norm1", d)
        norm(out, f"layers.{i}.0.norm2", d)
        linear(out, f"layers.{i}.0.to_q", d, inner, bias=False)
        linear(out, f"layers.{i}.0.to_kv", d, 2 * inner, bias=False)
        linear(out, f"layers.{i}.0.to_out", inner, d, bias=False)
        norm(out, f"layers.{i}.1.0", d)
        linear(out, f"layers.{i}.1.1", d, d * c["ff_mult"], bias=False)
        linear(out, f"layers.{i}.1.3", d * c["ff_mult"], d, bias=False)
    return out


def build() -> dict:
    return {
        "source": f"github.com/Drexubery/ViewCrafter@{COMMIT} (configs/inference_pvd_512.yaml, inference_pvd_1024.yaml)",
        "prefixes": {"unet": "model.diffusion_model.", "vae": "first_stage_model.",
                     "text": "cond_stage_model.model.", "image": "embedder.model.", "resampler": "image_proj_model."},
        "groups": {"unet": unet_keys(), "vae": vae_keys(), "text": clip_text_keys(), "image": clip_image_keys(),
                   "resampler": resampler_keys()},
        # registered by DDPM.register_schedule / LatentDiffusion (use_dynamic_rescale): present in the
        # checkpoint's state_dict, no network weights
        "schedule_buffers": {**{k: [1000] for k in SCHEDULE_BUFFERS}, "scale_arr": [1400]},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    text = json.dumps(build(), indent=0, sort_keys=True)
    if args.check:
        with gzip.open(OUT, "rt") as f:
            same = f.read() == text
        print("up to date" if same else f"{OUT} differs from the enumerator")
        return 0 if same else 1
    with gzip.GzipFile(OUT, "wb", mtime=0) as f:
        f.write(text.encode())
    data = build()
    n = sum(len(g) for g in data["groups"].values())
    params = {k: sum(_numel(s) for s in g.values()) for k, g in data["groups"].items()}
    print(f"wrote {OUT}: {n} tensors; parameters per group {params}")
    return 0


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


if __name__ == "__main__":
    sys.exit(main())
