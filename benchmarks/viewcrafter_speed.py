"""Speed and memory of our ViewCrafter-compatible model with random weights (issue 21).

Cases (full-size networks, 1.44 B-parameter UNet, bf16 on the GPU):
  512   : 16 frames at 512x320, 50 DDIM steps with CFG (guidance 7.5, rescale 0.7, eta 1), as ViewCrafter_16
  1024  : 25 frames at 1024x576, 50 steps with CFG, as ViewCrafter_25
  *_4step: the same clip with 4 steps and no CFG: what a distilled student of this size would take
Each case times one whole pipeline call (CLIP image tower + resampler, VAE encode of the renders,
the denoising loop, VAE decode) after one 2-step warm-up call, and the denoising loop alone; peak
GPU memory is per case. Text embeddings are random tensors (no tokenizer vocabulary needed).

    python benchmarks/viewcrafter_speed.py --device cuda --json benchmarks/results/viewcrafter_speed.json
    python benchmarks/viewcrafter_speed.py --device cpu --tiny --json /tmp/vc.json   # smoke test

Needs torch, diffusers, kornia (as fvgen itself). About 3-4 minutes on one H100.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch


from fvgen.videomodel.viewcrafter import (
    VARIANTS,
    ViewCrafterConfig,
    ViewCrafterVariant,
    build_networks,
    make_pipeline,
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(pipe, variant: ViewCrafterVariant, steps: int, cfg: float, device: torch.device, repeats: int) -> dict:
    g = torch.Generator(device="cpu").manual_seed(0)
    renders = (torch.rand(1, 3, variant.frames, variant.height, variant.width, generator=g) * 2 - 1).to(device)
    image = renders[:, :, 0]
    ctx = pipe.unet.config.context_dim
    text = torch.randn(1, 77, ctx, generator=g).to(device)
    kwargs = {"prompt_embeds": text, "negative_prompt_embeds": torch.zeros_like(text), "guidance_scale": cfg,
                  "guidance_rescale": 0.7, "eta": 1.0, "fps": variant.fs}
    pipe(renders, image, num_inference_steps=2, generator=torch.Generator().manual_seed(1), **kwargs)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    totals, loops = [], []
    for r in range(repeats):
        marks = []

        def cb(i, n, marks=marks):
            sync(device)
            marks.append(time.perf_counter())

        sync(device)
        t0 = time.perf_counter()
        out = pipe(renders, image, num_inference_steps=steps, generator=torch.Generator().manual_seed(r),
                   callback=cb, **kwargs)
        sync(device)
        totals.append(time.perf_counter() - t0)
        # the loop from the end of the first step back-extrapolated by one mean step
        per_step = (marks[-1] - marks[0]) / max(len(marks) - 1, 1) if len(marks) > 1 else marks[0] - t0
        loops.append(per_step * steps)
        if out.shape != renders.shape:
            raise RuntimeError(f"output {list(out.shape)}, renders {list(renders.shape)}")
        finite = bool(torch.isfinite(out).all())  # recorded, not fatal: random weights time the same
    res = {"height": variant.height, "width": variant.width, "frames": variant.frames, "steps": steps,
           "cfg": cfg != 1.0, "seconds_total": min(totals), "seconds_denoise": min(loops),
           "seconds_per_step": min(loops) / steps, "repeats": repeats,
           "output_finite": finite}
    if device.type == "cuda":
        res["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", required=True, help="where to write the results")
    ap.add_argument("--tiny", action="store_true", help="tiny networks and clips (CPU smoke test)")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--cases", default="512,512_4step,1024,1024_4step")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    if device.type == "cpu" and not args.tiny:
        print("full size on the CPU would take hours; pass --tiny", file=sys.stderr)
        return 2
    if args.tiny:
        config = ViewCrafterConfig.tiny(frames=2)
        variants = {"512": ViewCrafterVariant("tiny-512", 32, 48, 2, 0.7), "1024": ViewCrafterVariant("tiny-1024", 32, 64, 3, 0.3)}
        steps = min(args.steps, 2)
    else:
        config = ViewCrafterConfig.full()
        variants = VARIANTS
        steps = args.steps
    t0 = time.perf_counter()
    torch.manual_seed(0)
    nets = build_networks(config, device)
    for name in nets:
        nets[name] = nets[name].to(dtype=dtype).eval()
    build_s = time.perf_counter() - t0
    params = {k: sum(p.numel() for p in v.parameters()) for k, v in nets.items()}
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "dtype": args.dtype, "tiny": args.tiny, "parameters": params,
              "build_seconds": build_s, "weights": "random (timing only)", "cases": {}}
    for case in args.cases.split(","):
        key, _, kind = case.partition("_")
        variant = variants[key]
        pipe = make_pipeline(nets, variant)
        few = kind == "4step"
        res = run_case(pipe, variant, 4 if few else steps, 1.0 if few else 7.5, device, args.repeats)
        result["cases"][case] = res
        print(f"{case}: {res}", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
