"""Fit iterations/s: fvgen's fit loop against a bare loop of gsplat's ``rasterization`` and
``DefaultStrategy`` at the same settings (same initial points, images, loss, optimizers and
densification). Target: ours >= 0.9x the bare loop (our structure must cost nothing).

Usage (CUDA): python benchmarks/fit_speed.py PRIORS_DIR [--iterations 3000] [--json OUT.json]
PRIORS_DIR is a finished ``OUT/priors`` folder of an fvgen run.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch


from fvgen.fit import FitConf, FitViews, fit_gaussians, masked_loss  # noqa: E402
from fvgen.render.gaussians import gsplat_camera  # noqa: E402
from fvgen.render.splats import init_splats  # noqa: E402
from fvgen.stages.priors import load  # noqa: E402


def bare_gsplat_loop(images, cams, points, conf: FitConf, device) -> float:
    from gsplat import rasterization
    from gsplat.strategy import DefaultStrategy

    torch.manual_seed(conf.seed)
    params = init_splats(points.xyz, points.rgb, conf.sh_degree, conf.init_opacity, conf.init_scale, device)
    splats = torch.nn.ParameterDict({k: torch.nn.Parameter(v) for k, v in params.items()})
    import numpy as np

    c = np.stack([cam.center for cam in cams])
    scale = float(1.1 * np.linalg.norm(c - c.mean(0), axis=1).max())
    lrs = {"means": conf.means_lr * scale, "scales": conf.scales_lr, "quats": conf.quats_lr,
           "opacities": conf.opacities_lr, "sh0": conf.sh0_lr, "shN": conf.shN_lr}
    opts = {k: torch.optim.Adam([{"params": splats[k], "lr": lrs[k], "name": k}], eps=1e-15, betas=(0.9, 0.999))
            for k in splats}
    strat = DefaultStrategy(refine_start_iter=conf.refine_start_iter,
                            refine_stop_iter=int(conf.iterations * conf.refine_stop_fraction),
                            refine_every=conf.refine_every, reset_every=conf.reset_every,
                            grow_grad2d=conf.grow_grad2d)
    state = strat.initialize_state(scene_scale=scale)
    viewmats, Ks = gsplat_camera(cams, device)
    imgs = images.to(device)
    W, H = cams[0].width, cams[0].height
    decay = 0.01 ** (1.0 / conf.iterations)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for step in range(conf.iterations):
        i = step % len(cams)
        deg = min(step // conf.sh_degree_interval, conf.sh_degree)
        colors, _, info = rasterization(splats["means"], splats["quats"],
                                        torch.exp(splats["scales"]), torch.sigmoid(splats["opacities"]),
                                        torch.cat([splats["sh0"], splats["shN"]], 1), viewmats[i:i + 1],
                                        Ks[i:i + 1], W, H, sh_degree=deg, packed=False)
        strat.step_pre_backward(splats, opts, state, step, info)
        loss = masked_loss(colors, imgs[i:i + 1], None, None, conf.ssim_lambda)
        loss.backward()
        for o in opts.values():
            o.step()
            o.zero_grad(set_to_none=True)
        for g in opts["means"].param_groups:
            g["lr"] *= decay
        strat.step_post_backward(splats, opts, state, step, info, packed=False)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("priors_dir", type=Path)
    ap.add_argument("--iterations", type=int, default=3000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("fit_speed needs CUDA (it compares against gsplat's CUDA rasterizer)")
    pri, imgs = load(args.priors_dir)
    conf = FitConf(iterations=args.iterations)
    images = torch.from_numpy(imgs)
    # warm-up: builds gsplat's kernels and CUDA context outside the timings
    fit_gaussians(FitViews(images, pri.cameras), pri.points, FitConf(iterations=20), "cuda")
    bare = bare_gsplat_loop(images, pri.cameras, pri.points, conf, "cuda")
    _, figs, _ = fit_gaussians(FitViews(images, pri.cameras), pri.points, conf, "cuda")
    ours = figs["seconds"]
    res = {"iterations": args.iterations, "image_size": [pri.cameras[0].width, pri.cameras[0].height],
           "init_points": len(pri.points), "bare_gsplat_s": round(bare, 3), "fvgen_fit_s": ours,
           "bare_it_per_s": round(args.iterations / bare, 1), "fvgen_it_per_s": round(args.iterations / ours, 1),
           "ratio_fvgen_over_bare": round(bare / ours, 3), "final_gaussians": figs["gaussians"],
           "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "host": platform.node(),
           "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
