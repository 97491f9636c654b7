"""Sampling time of the teacher for one clip (one window of the preset's frame count), with
random weights: timing only, no quality. DDIM on the trailing schedule, CFG on (two UNet passes a
step) unless --cfg 1; bf16 autocast on CUDA. Also times 4 steps, the distilled student's budget.

Usage: python benchmarks/teacher_sampling.py [--presets embedded paper] [--steps 50 4] [--device cuda]
           [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch


from fvgen.videomodel.model import TeacherModel  # noqa: E402
from fvgen.videomodel.sample import sample_latents  # noqa: E402


def time_clip(model: TeacherModel, steps: int, cfg: float, device: str, repeats: int) -> float:
    p = model.preset
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(1, 3, p.height, p.width, generator=g) * 2 - 1
    warp = torch.rand(1, p.frames, 3, p.height, p.width, generator=g) * 2 - 1
    mask = (torch.rand(1, p.frames, 1, p.height, p.width, generator=g) > 0.3).float()
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.no_grad():
            sample_latents(model, ref, warp, mask, steps=steps, cfg=cfg, autocast=device == "cuda")
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", nargs="+", default=["embedded", "paper"])
    ap.add_argument("--steps", type=int, nargs="+", default=[50, 4])
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    rows = []
    for name in a.presets:
        model = TeacherModel.random(name).to(a.device)
        model.eval()
        params = sum(p.numel() for m in model.modules().values() for p in m.parameters())
        time_clip(model, 2, a.cfg, a.device, 1)  # warm-up (kernels, allocator)
        for steps in a.steps:
            s = time_clip(model, steps, a.cfg, a.device, a.repeats)
            p = model.preset
            row = {"preset": name, "params_M": round(params / 1e6, 1), "clip": f"{p.width}x{p.height}x{p.frames}",
                   "steps": steps, "cfg": a.cfg, "seconds_per_clip": round(s, 3), "device": a.device}
            if a.device == "cuda":
                row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
                row["gpu"] = torch.cuda.get_device_name()
            rows.append(row)
            print(json.dumps(row), flush=True)
        del model
        if a.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    if a.json:
        a.json.write_text(json.dumps({"host": platform.node(), "torch": torch.__version__,
                                      "date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
