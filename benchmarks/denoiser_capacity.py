"""Can the teacher's denoiser take the noise out at low noise levels? A CPU check of a preset's
architecture before it gets GPU time.

Why: run 3 (pixel space, 8x8 patches = 192 channels per cell, UNet top width 64) sampled noise:
with 50 DDIM steps its corrections had a std of 0.78 and SSIM fell to 0.04, while its one-step
(t = T) prediction was smooth. At low t the v-target is mostly the noise itself, 192 independent
numbers per cell, and a 64-channel first layer cannot carry them from input to output.

For each candidate preset (at a reduced clip size: the question is per latent cell), a freshly
initialised UNet is trained for ``--steps`` steps on real training examples (random crops,
``fvgen.teacher.data`` shards of ``shared/datasets-train`` scenes and procedural rooms) with the
timestep drawn in a low-noise band, and the v-loss of the last steps is reported next to 1.0, the
loss of a denoiser that sees no noise at all. A preset that cannot represent the noise stays near
the fraction of the cell's dimensions its first layer cannot carry (1 - 64/192 = 0.67 for run 3).

    python -m fvgen.teacher.data build --out /tmp/ex --scenes beer_can fruit --per-scene 1 --procedural 2 --clips-per-prior 3 --no-triangulate
    python benchmarks/denoiser_capacity.py --data /tmp/ex --json benchmarks/results/denoiser_capacity_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

D, C = "DownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal"
U, CU = "UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"


def candidates():
    from fvgen.teacher.configs import get_preset

    px = get_preset("embedded")
    return {
        "run3: pixel, patch 8, widths 64-128-192": px,
        "pixel, patch 4, widths 64-128-192": replace(px, patch=4, latent_channels=48),
        "pixel, patch 4, widths 64-128-192-256": replace(px, patch=4, latent_channels=48, unet_channels=(64, 128, 192, 256),
                                                          unet_heads=(2, 4, 6, 8), unet_down=(D, D, C, C),
                                                          unet_up=(CU, CU, U, U)),
        "pixel, patch 8, widths 256-256-256": replace(px, unet_channels=(256, 256, 256), unet_heads=(4, 4, 4)),
        "latent (runs 1-2), untrained autoencoder": get_preset("embedded-latent"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+", required=True, help="example shard folders")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--t-max", type=int, default=100, help="timesteps drawn in [0, t_max) of 1000")
    ap.add_argument("--size", type=int, nargs=2, default=[128, 96], help="crop width height")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--only", nargs="*", help="substrings of the candidate names to run")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(2)
    from fvgen.teacher.data import ExampleBank
    from fvgen.teacher.model import TeacherModel
    from fvgen.teacher.train import Denoiser, encode_batch, make_train_scheduler

    W, H = a.size
    bank = ExampleBank(a.data, a.frames)
    rng = np.random.default_rng(0)
    results = {}
    for name, preset in candidates().items():
        if a.only and not any(s in name for s in a.only):
            continue
        p = replace(preset, width=W, height=H, frames=a.frames)
        p.check()
        m = TeacherModel.random(p, seed=0)
        den = Denoiser(m).train()
        opt = torch.optim.AdamW(den.parameters(), lr=a.lr, weight_decay=0.0)
        sched = make_train_scheduler(m)
        gen = torch.Generator().manual_seed(0)
        losses, t0 = [], time.time()
        for step in range(a.steps):
            b = bank.batch(rng.integers(0, len(bank), a.batch).tolist())
            y, x = rng.integers(0, b["gt"].shape[-2] - H + 1), rng.integers(0, b["gt"].shape[-1] - W + 1)
            b = {k: v[..., y:y + H, x:x + W] for k, v in b.items()}
            with torch.no_grad():
                lat = encode_batch(m, b)
            x0 = lat["x0"]
            t = torch.randint(0, a.t_max, (len(x0),), generator=gen)
            noise = torch.randn(x0.shape, generator=gen)
            v = den(sched.add_noise(x0, noise, t), t, lat["cat"], lat["ref"], torch.ones(len(x0)))
            loss = torch.nn.functional.mse_loss(v, sched.get_velocity(x0, noise, t))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        tail = float(np.mean(losses[-max(1, a.steps // 6):]))
        results[name] = {"final_loss": tail, "first_loss": losses[0], "seconds": round(time.time() - t0, 1),
                         "unet_params": m.num_params()["unet"], "cell_channels": p.latent_channels,
                         "first_width": p.unet_channels[0]}
        print(f"{name}: v-loss at t < {a.t_max}: {losses[0]:.3f} -> {tail:.3f} ({results[name]['seconds']} s)", flush=True)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"command": " ".join(sys.argv), "machine": platform.node(),
                                      "date": time.strftime("%Y-%m-%d"), "steps": a.steps, "t_max": a.t_max,
                                      "size": a.size, "frames": a.frames, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
