"""Where one UNet pass of the student spends its time (issue 19: the paper-size student runs its 4 UNet
passes at 3.7x their FLOP floor on an H100, the target is 2x; channels_last did not pay, so the next step
has to know which kernels are slow before it fuses or replaces any).

One pass at batch 1 (the student's), random weights, bf16 autocast on CUDA, under ``torch.profiler``
after a warm-up: device time per kernel, grouped into convolution, matmul (linear layers), attention,
normalisation, elementwise/copies and the rest, with each group's share and its top kernels; and the
pass's FLOPs by operator (FlopCounterMode) beside them, so that a group's achieved rate can be read off.

    python benchmarks/unet_profile.py --preset paper --json benchmarks/results/h100/unet_profile_paper.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sampling import unet_inputs, unet_pass_flop_counter  # noqa: E402

from fvgen.videomodel.model import TeacherModel  # noqa: E402

# kernel-name patterns, first match wins (CUDA kernel names and, on the CPU, aten operator names)
GROUPS = (
    ("attention", ("flash", "fmha", "attention", "softmax", "sdpa", "efficient_attention")),
    ("convolution", ("conv", "implicit", "cudnn", "winograd", "dgrad", "wgrad", "fprop")),
    ("matmul", ("gemm", "cutlass", "xmma", "matmul", "addmm", "mm", "linear", "bmm")),
    ("normalisation", ("norm", "welford")),
    ("elementwise/copy", ("elementwise", "vectorized", "copy", "cat", "add", "mul", "silu", "gelu", "unrolled",
                          "reduce", "fill", "index", "where", "to_copy")),
)


def group_of(name: str) -> str:
    n = name.lower()
    for group, keys in GROUPS:
        if any(k in n for k in keys):
            return group
    return "other"


def profile_pass(model: TeacherModel, device: str, inputs: tuple, autocast: bool = True) -> dict:
    """Device (CUDA) or self CPU time of one UNet pass on ``inputs`` (:func:`sampling.unet_inputs`), by
    group, in ms. ``autocast=False``: the pass in the weights' own dtype, inputs cast to it (bf16
    weights: every op in bf16, the norms too)."""
    from torch.profiler import ProfilerActivity, profile

    x, cat, tokens = inputs
    if not autocast:
        dtype = next(model.unet.parameters()).dtype
        x, cat, tokens = x.to(dtype), cat.to(dtype), tokens.to(dtype)
    t = torch.tensor([499], device=device)

    def one_pass():
        with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=autocast and device == "cuda"):
            model.denoise(x, t, cat, tokens)
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):
        one_pass()
    start = time.perf_counter()
    one_pass()
    wall = time.perf_counter() - start
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=acts) as prof:
        one_pass()
    groups: dict[str, dict] = defaultdict(lambda: {"ms": 0.0, "calls": 0, "kernels": defaultdict(float)})
    for ev in prof.key_averages():
        if device == "cuda":
            us = getattr(ev, "self_device_time_total", None)
            if us is None:
                us = ev.self_cuda_time_total
            if ev.device_type != torch.autograd.DeviceType.CUDA or us <= 0:
                continue
        else:
            us = ev.self_cpu_time_total
            if us <= 0 or not ev.key.startswith("aten::"):
                continue
        g = groups[group_of(ev.key)]
        g["ms"] += us / 1e3
        g["calls"] += ev.count
        g["kernels"][ev.key[:120]] += us / 1e3
    total = sum(g["ms"] for g in groups.values())
    out = {}
    for name, g in sorted(groups.items(), key=lambda kv: -kv[1]["ms"]):
        top = sorted(g["kernels"].items(), key=lambda kv: -kv[1])[:5]
        out[name] = {"ms": round(g["ms"], 3), "share": round(g["ms"] / max(total, 1e-9), 3), "calls": g["calls"],
                     "top": [{"kernel": k, "ms": round(v, 3)} for k, v in top]}
    return {"wall_ms": round(wall * 1e3, 2), "profiled_ms": round(total, 2), "groups": out}


def flops_by_operator(model: TeacherModel, device: str) -> tuple[int, dict[str, int]]:
    """One pass's FLOPs in all and by aten operator (convolution, addmm, mm, bmm, ...)."""
    counter = unet_pass_flop_counter(model, device)
    out: dict[str, int] = defaultdict(int)
    for op, n in counter.get_flop_counts().get("Global", {}).items():
        out[str(op).removeprefix("aten.").split(".")[0]] += int(n)
    return int(counter.get_total_flops()), dict(out)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--bf16-weights", action="store_true", help="hold the weights in bf16, as fvgen samples on "
                    "CUDA (fvgen.videomodel.model.inference_dtype), instead of fp32 cast by autocast")
    ap.add_argument("--no-autocast", action="store_true", help="with --bf16-weights: run the pass in bf16 without "
                    "autocast, whose fp32 norms copy every normalised activation to fp32 and back (the 36 ms of bf16 "
                    "copies left in a paper-size pass with bf16 weights, H100)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    if a.no_autocast and not a.bf16_weights:
        ap.error("--no-autocast needs --bf16-weights (fp32 weights without autocast is the fp32 pass)")
    if a.threads:
        torch.set_num_threads(a.threads)
    model = TeacherModel.random(a.preset).to(a.device).eval()
    inputs = unet_inputs(model, a.device)  # the conditioning as sampling makes it, before any cast of the weights
    total, flops = flops_by_operator(model, a.device)  # the same in any dtype
    if a.bf16_weights:
        model.to(dtype=torch.bfloat16)
    row = {"preset": a.preset, "device": torch.cuda.get_device_name() if a.device == "cuda" else platform.processor()
           or "cpu", "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "bf16_weights": a.bf16_weights,
           "autocast": not a.no_autocast}
    row["profile"] = profile_pass(model, a.device, inputs, autocast=not a.no_autocast)
    row["gflops_by_operator"] = {k: round(v / 1e9, 2) for k, v in sorted(flops.items(), key=lambda kv: -kv[1])}
    row["gflops_total"] = round(total / 1e9, 2)
    print(json.dumps(row, indent=1))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(row, indent=1))
    return row


if __name__ == "__main__":
    main()
