"""Can the teacher's denoiser take the noise out at low noise levels? A CPU check of a preset's
architecture before it gets GPU time.

Why: run 3 (pixel space, 8x8 patches = 192 channels per cell, UNet top width 64) sampled noise:
with 50 DDIM steps its corrections had a std of 0.78 and SSIM fell to 0.04, while its one-step
(t = T) prediction was smooth. At low t the v-target is mostly the noise itself, 192 independent
numbers per cell, and a 64-channel first layer cannot carry them from input to output.

For each candidate preset (at a reduced clip size: the question is per latent cell), a freshly
initialised UNet is trained for ``--steps`` steps on real training examples (random crops,
``fvgen.videomodel.data`` shards of ``shared/datasets-train`` scenes and procedural rooms) with the
timestep drawn in a low-noise band. Then, on held-back batches at fixed timesteps in that band, its
estimate of the clean target (x0_hat: directly for x0-prediction, sqrt(a) x_t - sigma v_hat for
v-prediction) is compared with the noisy input rescaled, x_t / sqrt(a): the **denoising gain** in
dB is 10 log10(MSE(x_t / sqrt(a), x0) / MSE(x0_hat, x0)). Positive: the model takes noise out;
zero or negative: it leaves it in, and a sampler's last steps leave it in the output.

    fvgen data build --out /tmp/ex --scenes beer_can ethiopian_head fruit --per-scene 1 --procedural 3 --clips-per-prior 3 --no-triangulate
    python benchmarks/denoiser_capacity.py --data /tmp/ex --steps 150 --only "64-128-192," --json benchmarks/results/denoiser_capacity_cpu.json
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


D, C = "DownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal"
U, CU = "UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"


def candidates():
    from fvgen.videomodel.configs import get_preset

    px = get_preset("embedded")
    v = replace(px, prediction="v")
    return {
        "run3: pixel, patch 8, widths 64-128-192, v-prediction": v,
        "pixel, patch 8, widths 64-128-192, x0-prediction (embedded now)": px,
        "pixel, patch 4, widths 64-128-192, x0-prediction": replace(px, patch=4, latent_channels=48),
        "pixel, patch 4, widths 64-128-192, v-prediction": replace(v, patch=4, latent_channels=48),
        "pixel, patch 4, widths 64-128-192-256, v-prediction": replace(v, patch=4, latent_channels=48, unet_channels=(64, 128, 192, 256),
                                                          unet_heads=(2, 4, 6, 8), unet_down=(D, D, C, C),
                                                          unet_up=(CU, CU, U, U)),
        "pixel, patch 8, widths 256-256-256, v-prediction": replace(v, unet_channels=(256, 256, 256), unet_heads=(4, 4, 4)),
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
    from fvgen.videomodel.data import ExampleBank
    from fvgen.videomodel.model import TeacherModel
    from fvgen.videomodel.train.steps import Denoiser, diffusion_loss, encode_batch, make_train_scheduler

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

        def crop(b, r):
            y, x = r.integers(0, b["gt"].shape[-2] - H + 1), r.integers(0, b["gt"].shape[-1] - W + 1)
            return {k: v[..., y:y + H, x:x + W] for k, v in b.items()}

        for step in range(a.steps):
            b = crop(bank.batch(rng.integers(0, len(bank), a.batch).tolist()), rng)
            with torch.no_grad():
                lat = encode_batch(m, b)
            loss = diffusion_loss(m, den, lat, sched, 0.0, gen, t_max=a.t_max)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        gains = {}
        den.eval()
        er = np.random.default_rng(123)
        with torch.no_grad():
            for tv in (10, a.t_max // 2, a.t_max - 1):
                num = den_ = 0.0
                for k in range(4):
                    b = crop(bank.batch(er.integers(0, len(bank), a.batch).tolist()), er)
                    lat = encode_batch(m, b)
                    x0 = lat["x0"]
                    t = torch.full((len(x0),), tv)
                    noisy = sched.add_noise(x0, torch.randn(x0.shape, generator=torch.Generator().manual_seed(k)), t)
                    out = den(noisy, t, lat["cat"], lat["ref"], torch.ones(len(x0)))
                    ab = float(sched.alphas_cumprod[tv])
                    x0_hat = out if p.prediction == "x0" else ab ** 0.5 * noisy - (1 - ab) ** 0.5 * out
                    num += float(((noisy / ab ** 0.5 - x0) ** 2).mean())
                    den_ += float(((x0_hat - x0) ** 2).mean())
                gains[int(tv)] = round(float(10 * np.log10(num / den_)), 2)
        tail = float(np.mean(losses[-max(1, a.steps // 6):]))
        results[name] = {"denoising_gain_db": gains, "final_loss": tail, "first_loss": losses[0],
                         "seconds": round(time.time() - t0, 1), "unet_params": m.num_params()["unet"],
                         "cell_channels": p.latent_channels, "first_width": p.unet_channels[0],
                         "prediction": p.prediction}
        print(f"{name}: denoising gain at t = {list(gains)}: {list(gains.values())} dB "
              f"(training loss {losses[0]:.3f} -> {tail:.3f}, {results[name]['seconds']} s)", flush=True)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"command": " ".join(sys.argv), "machine": platform.node(),
                                      "date": time.strftime("%Y-%m-%d"), "steps": a.steps, "t_max": a.t_max,
                                      "size": a.size, "frames": a.frames, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
