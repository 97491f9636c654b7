"""Does the teacher's autoencoder cap its quality? Train the embedded preset's ``AutoencoderKL`` with
different latent channel counts on the same frames for the same steps, then measure the round trip
(encode, decode) on held-out frames: the evaluation scenes' test images at the model size (they are
only measured, never trained on). A latent diffusion model's output can be no closer to the truth
than its decoder's round trip.

Training frames: random crops of the training pool's images (``../shared/datasets-train``, at most
320 px; the autoencoder is convolutional, crops generalise to the full frame).

    python benchmarks/vae_capacity.py --channels 4 16 --steps 400 --crop 64 --json benchmarks/results/vae_capacity_cpu.json
    python benchmarks/vae_capacity.py --factors 4 --channels 4 --steps 400 --crop 64 --json benchmarks/results/vae_capacity_cpu_f4.json
    python benchmarks/vae_capacity.py --channels 4 --steps 400 --crop 64 --augment --json benchmarks/results/vae_capacity_cpu_augment.json
    python benchmarks/vae_capacity.py --model RUN/model --json benchmarks/results/vae_teacher_run2.json  (a trained one)
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



def model_size(images, width: int, height: int):
    """float RGB images [H, W, 3] in [0, 1] (``load_images``) -> [N, 3, height, width] in [-1, 1]."""
    import torch

    from fvgen.videomodel.sample import resize_frames

    return torch.stack([resize_frames(torch.as_tensor(im).permute(2, 0, 1)[None], width, height)[0]
                        for im in images]) * 2 - 1


def heldout_frames(width: int, height: int):
    """The test images of the 3-view splits of fern, dtu_scan24 and fox at the model size, [N, 3, H, W] in [-1, 1]."""
    from fvgen.evaluation.heldout import scene_image_files
    from fvgen.core.images import load_images
    from fvgen.core.datasets import EVAL_ROOT as DATASETS, EVAL_SCENES as SCENES, split_files

    images = []
    for scene in SCENES:
        _, test = split_files(scene)
        by_name = {f.name: f for f in scene_image_files(DATASETS / scene)}
        images += list(load_images([by_name[f] for f in test], 320).images)
    return model_size(images, width, height)


def psnr(a, b) -> float:
    """Mean PSNR over frames [N, 3, H, W] in [-1, 1]."""
    import torch

    mse = ((a - b) / 2).pow(2).flatten(1).mean(1)
    return float((-10 * torch.log10(mse.clamp_min(1e-12))).mean())


def training_scene_frames(width: int, height: int, per_scene: int = 4):
    """Every 10th image of each training scene (the first ``per_scene``), at the model size."""
    from fvgen.core.images import load_images
    from fvgen.videomodel import data as tdata

    images = []
    for s in tdata.train_scenes():
        images += list(load_images(sorted((s / "images").glob("*"))[::10][:per_scene], 320).images)
    return model_size(images, width, height)


def measure_model(a) -> None:
    """Round trip of a trained autoencoder against a bicubic resize with as many numbers as its latent."""
    import torch
    import torch.nn.functional as F

    from fvgen.videomodel.model import TeacherModel

    torch.set_num_threads(a.threads)
    m = TeacherModel.from_pretrained(a.model, torch.device("cpu"), torch.float32)
    p = m.preset
    lh, lw = p.height // p.latent_factor, p.width // p.latent_factor
    side = np.sqrt(p.latent_channels * lh * lw / 3 / (p.width * p.height))  # same count of numbers, RGB
    bh, bw = max(1, round(p.height * side)), max(1, round(p.width * side))
    out = {"model": str(a.model), "bicubic_size": [bw, bh], "latent": [p.latent_channels, lh, lw]}
    for name, frames in (("heldout", heldout_frames(p.width, p.height)),
                         ("training_scenes", training_scene_frames(p.width, p.height))):
        with torch.no_grad():
            rec = m.decode(m.encode(frames)).clamp(-1, 1)
        small = F.interpolate(frames, size=(bh, bw), mode="bicubic", antialias=True, align_corners=False)
        back = F.interpolate(small, size=(p.height, p.width), mode="bicubic", align_corners=False).clamp(-1, 1)
        err = (rec - frames) / 2
        low = float(F.avg_pool2d(err, p.latent_factor).pow(2).mean() / err.pow(2).mean())
        out[name] = {"frames": len(frames), "vae_psnr": psnr(rec, frames), "bicubic_psnr": psnr(back, frames),
                     "error_share_in_block_means": low}
        print(f"{name}: {len(frames)} frames, autoencoder round trip {out[name]['vae_psnr']:.2f} dB, bicubic via "
              f"{bw}x{bh} {out[name]['bicubic_psnr']:.2f} dB, error share in {p.latent_factor}x{p.latent_factor} means "
              f"{low:.2f}", flush=True)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"command": " ".join(sys.argv), "host": platform.node(),
                                      "date": time.strftime("%Y-%m-%d"), **out}, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--factors", type=int, nargs="+", default=[8], help="downsampling factors (4: one level fewer)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--augment", action="store_true",
                    help="colour augmentation of the crops: random channel order, per-channel gain, flips")
    ap.add_argument("--model", type=Path, help="instead of training: measure this teacher folder's autoencoder "
                    "on the held-out frames and on frames of its training scenes, beside a bicubic baseline")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    if a.model:
        return measure_model(a)

    import torch

    from fvgen.core.images import load_images
    from fvgen.videomodel import data as tdata
    from fvgen.videomodel.configs import get_preset
    from fvgen.videomodel.model import build_vae
    from fvgen.videomodel.vae import vae_loss

    torch.set_num_threads(a.threads)
    base = get_preset("embedded-latent")
    imgs = []
    for s in tdata.train_scenes():  # scenes differ in size: load each scene on its own
        li = load_images(sorted((s / "images").glob("*")), 320)
        imgs += list(li.images)  # float RGB in [0, 1]
    test = heldout_frames(base.width, base.height)
    print(f"{len(imgs)} training images, {len(test)} held-out frames", flush=True)
    results = []
    for factor, c in [(f, c) for f in a.factors for c in a.channels]:
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        levels = int(round(np.log2(factor))) + 1
        vae = build_vae(replace(base, latent_channels=c, vae_channels=base.vae_channels[:levels]))
        n_params = sum(p.numel() for p in vae.parameters())
        opt = torch.optim.AdamW(vae.parameters(), lr=a.lr, weight_decay=0.01)
        t0 = time.time()
        curve = []
        for step in range(1, a.steps + 1):
            batch = []
            for _ in range(a.batch):
                im = imgs[int(rng.integers(len(imgs)))]
                y = int(rng.integers(0, im.shape[0] - a.crop + 1))
                x = int(rng.integers(0, im.shape[1] - a.crop + 1))
                crop = im[y:y + a.crop, x:x + a.crop]
                if a.augment:  # colours the 629 images do not have, so that the decoder cannot memorise theirs
                    crop = crop[..., rng.permutation(3)] * rng.uniform(0.6, 1.2, 3).astype(np.float32)
                    crop = np.clip(crop, 0, 1)[:, ::-1] if rng.random() < 0.5 else np.clip(crop, 0, 1)
                batch.append(np.ascontiguousarray(crop))
            xb = torch.as_tensor(np.stack(batch)).permute(0, 3, 1, 2) * 2 - 1
            loss, fig = vae_loss(vae, xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            opt.step()
            if step % 50 == 0:
                curve.append({"step": step, "mse": fig["mse"]})
                print(f"channels {c} step {step}: mse {fig['mse']:.4f} ({time.time() - t0:.0f} s)", flush=True)
        with torch.no_grad():
            vae.eval()
            rec = torch.cat([vae.decode(vae.encode(test[i:i + 8]).latent_dist.mode()).sample
                             for i in range(0, len(test), 8)]).clamp(-1, 1)
        heldout = psnr(rec, test)
        results.append({"augment": a.augment, "factor": factor, "latent_channels": c, "params": n_params,
                        "steps": a.steps, "heldout_psnr": heldout,
                        "train_seconds": round(time.time() - t0, 1), "curve": curve})
        print(f"factor {factor}, latent channels {c}: {n_params / 1e6:.2f} M parameters, held-out round trip {heldout:.2f} dB", flush=True)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"command": " ".join(sys.argv), "host": platform.node(), "date": time.strftime("%Y-%m-%d"),
                                      "batch": a.batch, "crop": a.crop, "lr": a.lr, "results": results}, indent=1))


if __name__ == "__main__":
    main()
