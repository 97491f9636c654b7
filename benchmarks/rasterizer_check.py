"""Check fvgen's torch rasterizer against gsplat's CUDA ``rasterization`` (and time both).

Usage (on a machine with a CUDA GPU and gsplat's CUDA kernels)::

    python benchmarks/rasterizer_check.py out.json            # default set of scenes
    python benchmarks/rasterizer_check.py out.json --quick    # two small scenes only

For random scenes of a few sizes it renders the *same CUDA tensors* with
``fvgen.render.gaussians.rasterize(backend="torch")`` and ``backend="gsplat"``
(= ``gsplat.rasterization(packed=False)``), and compares

* the forward: colours / alphas max, mean, p99, p99.9 abs difference and the fraction of
  pixels off by > 1e-4 / 1e-3 (a few boundary pixels may differ by up to ~1/255: the
  ``alpha >= 1/255`` test and the ``T <= 1e-4`` stop are discontinuous and gsplat uses
  fast-math ``__expf``);
* the projection meta: radii equality, means2d / depths / conics differences;
* gradients of a random linear loss w.r.t. means, quats, scales, opacities, colours (SH) and
  ``info["means2d"]`` (what DefaultStrategy reads): relative L2 difference and cosine;
* timings (CUDA-synchronised) of forward and forward+backward for both, and of our torch path
  on CPU with ``--cpu-threads`` threads (default 2, like the CI).

It prints a JSON summary and writes it to the given path (rewritten after every scene, so a
crash still leaves the results so far). Without CUDA it says so, runs only the CPU timings
of our torch path and exits 0. Never raises on a failing scene: errors go into the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from fvgen.render.gaussians import rasterize  # noqa: E402

# name, N, W, H, C, sh_degree (None = RGB features), opacity range, scale multiplier, extras
SCENES = [
    dict(name="tiny_rgb", N=2_000, W=64, H=48, C=1, sh=None, opa=(0.05, 0.95), smul=1.0),
    dict(name="small_sh3_2cams_bg", N=10_000, W=160, H=120, C=2, sh=3, opa=(0.05, 0.95),
         smul=1.0, bg=True),
    dict(name="cpu_preset_30k_init", N=30_000, W=250, H=190, C=1, sh=3, opa=(0.1, 0.1), smul=1.0),
    dict(name="cpu_preset_50k_trained", N=50_000, W=250, H=190, C=1, sh=3, opa=(0.02, 0.99),
         smul=1.0, mode="RGB+ED"),
    dict(name="opaque_stack_early_stop", N=20_000, W=250, H=190, C=1, sh=None, opa=(0.9, 0.99),
         smul=2.5),
    dict(name="large_200k_640x480", N=200_000, W=640, H=480, C=1, sh=3, opa=(0.02, 0.99),
         smul=1.0),
]
QUICK = ["tiny_rgb", "small_sh3_2cams_bg"]


def make_scene(N, W, H, C, sh, opa, smul, seed=0, bg=False):
    """Surface-like random scene (a wavy wall and a sphere) in front of C nearby cameras."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(N, 2, generator=g) * 2 - 1
    means = torch.stack([u[:, 0] * 3, u[:, 1] * 2.3,
                         6 + 0.5 * torch.sin(3 * u[:, 0]) * torch.cos(2 * u[:, 1])], -1)
    k = N // 3
    d = torch.randn(k, 3, generator=g)
    means[:k] = d / d.norm(dim=-1, keepdim=True) * 1.2 + torch.tensor([0.3, 0.2, 4.0])
    # a few Gaussians behind / beside the cameras and very close to the near plane
    n_odd = max(N // 100, 1)
    means[-n_odd:] = torch.randn(n_odd, 3, generator=g) * 3
    spacing = math.sqrt(6 * 4.6 / N)
    scales = spacing * smul * (0.3 + 1.4 * torch.rand(N, 3, generator=g))
    quats = torch.randn(N, 4, generator=g)
    opacities = opa[0] + (opa[1] - opa[0]) * torch.rand(N, generator=g)
    if sh is None:
        colors = torch.rand(N, 3, generator=g)
    else:
        colors = torch.randn(N, (sh + 1) ** 2, 3, generator=g) * 0.15
        colors[:, 0] = (torch.rand(N, 3, generator=g) - 0.5) / 0.28209479177387814
    viewmats, Ks = [], []
    for c in range(C):
        ang = 0.12 * c
        vm = torch.eye(4)
        vm[:3, :3] = torch.tensor([[math.cos(ang), 0.0, math.sin(ang)], [0.0, 1.0, 0.0],
                                   [-math.sin(ang), 0.0, math.cos(ang)]])
        vm[:3, 3] = torch.tensor([0.1 * c, -0.05 * c, 0.05 * c])
        viewmats.append(vm)
        f = 0.8 * W * (1 + 0.05 * c)
        Ks.append(torch.tensor([[f, 0.0, W / 2 + 0.3 * c], [0.0, f, H / 2 - 0.2 * c],
                                [0.0, 0.0, 1.0]]))
    backgrounds = torch.rand(C, 3, generator=g) if bg else None
    return dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors,
                viewmats=torch.stack(viewmats), Ks=torch.stack(Ks), backgrounds=backgrounds)


PARAM_NAMES = ["means", "quats", "scales", "opacities", "colors"]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_once(scene, spec, device, backend, loss_w=None, want_grads=True):
    """One forward(+backward). Returns (colors, alphas, info, grads dict, fwd_s, total_s)."""
    params = {k: scene[k].to(device).clone().requires_grad_(want_grads) for k in PARAM_NAMES}
    vm = scene["viewmats"].to(device)
    Ks = scene["Ks"].to(device)
    bg = scene["backgrounds"].to(device) if scene["backgrounds"] is not None else None
    _sync(device)
    t0 = time.perf_counter()
    colors, alphas, info = rasterize(
        params["means"], params["quats"], params["scales"], params["opacities"],
        params["colors"], vm, Ks, spec["W"], spec["H"], sh_degree=spec["sh"], backgrounds=bg,
        render_mode=spec.get("mode", "RGB"), backend=backend)
    if want_grads and info["means2d"].requires_grad:
        info["means2d"].retain_grad()
    _sync(device)
    t1 = time.perf_counter()
    grads = {}
    if want_grads:
        if loss_w is None:
            loss = colors.sum() + alphas.sum()
        else:
            loss = (colors * loss_w[0]).sum() + (alphas * loss_w[1]).sum()
        loss.backward()
        _sync(device)
        grads = {k: p.grad for k, p in params.items()}
        grads["means2d"] = info["means2d"].grad
    t2 = time.perf_counter()
    return colors.detach(), alphas.detach(), info, grads, t1 - t0, t2 - t0


def time_backend(scene, spec, device, backend, repeats):
    run_once(scene, spec, device, backend)  # warm-up (JIT, allocator, caches)
    fwd, tot = [], []
    for _ in range(repeats):
        _, _, _, _, f, t = run_once(scene, spec, device, backend)
        fwd.append(f)
        tot.append(t)
    fwd.sort()
    tot.sort()
    return {"fwd_s_median": fwd[len(fwd) // 2], "fwd_bwd_s_median": tot[len(tot) // 2],
            "fwd_bwd_s_min": tot[0], "repeats": repeats}


def diff_stats(a, b):
    d = (a.double() - b.double()).abs().flatten()
    if d.numel() == 0:
        return {}
    q = d if d.numel() <= 4_000_000 else d[torch.randperm(d.numel(), device=d.device)[:4_000_000]]
    return {
        "max_abs": float(d.max()),
        "mean_abs": float(d.mean()),
        "p99_abs": float(torch.quantile(q, 0.99)),
        "p999_abs": float(torch.quantile(q, 0.999)),
        "frac_gt_1e-4": float((d > 1e-4).double().mean()),
        "frac_gt_1e-3": float((d > 1e-3).double().mean()),
        "ref_abs_mean": float(b.double().abs().mean()),
    }


def grad_stats(g, ref):
    if g is None or ref is None:
        return {"missing": [g is None, ref is None]}
    g, ref = g.double().flatten(), ref.double().flatten()
    rn = float(ref.norm())
    return {
        "rel_l2": float((g - ref).norm()) / max(rn, 1e-30),
        "cosine": float(torch.dot(g, ref)) / max(float(g.norm()) * rn, 1e-30),
        "max_abs_diff": float((g - ref).abs().max()),
        "ref_l2": rn,
        "finite": bool(torch.isfinite(g).all()),
    }


def compare(scene, spec, device, ref_backend="gsplat"):
    g = torch.Generator().manual_seed(123)
    C, H, W = scene["viewmats"].shape[0], spec["H"], spec["W"]
    nch = 3 + (1 if spec.get("mode", "RGB") in ("RGB+ED", "RGB+D") else 0)
    loss_w = (torch.rand(C, H, W, nch, generator=g).to(device),
              torch.rand(C, H, W, 1, generator=g).to(device))
    c_t, a_t, i_t, g_t, _, _ = run_once(scene, spec, device, "torch", loss_w)
    c_g, a_g, i_g, g_g, _, _ = run_once(scene, spec, device, ref_backend, loss_w)
    out = {
        "colors": diff_stats(c_t[..., :3], c_g[..., :3]),
        "alphas": diff_stats(a_t, a_g),
    }
    if nch == 4:
        # expected depth: compare where both are well covered
        m = (a_g[..., 0] > 0.5)
        out["expected_depth_alpha>0.5"] = diff_stats(c_t[..., 3][m], c_g[..., 3][m])
    i_t = {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in i_t.items()}
    i_g = {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in i_g.items()}
    r_t, r_g = i_t["radii"], i_g["radii"]
    vis_t, vis_g = (r_t > 0).all(-1), (r_g > 0).all(-1)
    both = vis_t & vis_g
    out["meta"] = {
        "visible_torch": int(vis_t.sum()),
        "visible_gsplat": int(vis_g.sum()),
        "visible_mismatch": int((vis_t != vis_g).sum()),
        "radii_equal_frac_of_visible": float((r_t[both] == r_g[both]).all(-1).double().mean())
        if both.any() else None,
        "radii_max_abs_diff": int((r_t[both] - r_g[both]).abs().max()) if both.any() else None,
        "means2d_max_abs_diff": float((i_t["means2d"][both] - i_g["means2d"][both]).abs().max())
        if both.any() else None,
        "depths_max_abs_diff": float((i_t["depths"][both] - i_g["depths"][both]).abs().max())
        if both.any() else None,
        "conics_max_rel_diff": float(((i_t["conics"][both] - i_g["conics"][both]).abs()
                                      / i_g["conics"][both].abs().clamp_min(1e-6)).max())
        if both.any() else None,
        "n_pairs_torch": i_t.get("n_pairs"),
        "n_isects_gsplat": int(i_g["flatten_ids"].numel()) if i_g.get("flatten_ids") is not None
        else None,
    }
    out["grads"] = {k: grad_stats(g_t.get(k), g_g.get(k)) for k in PARAM_NAMES + ["means2d"]}
    # densification signal as DefaultStrategy computes it (pixel-unit grads of visible ones)
    if g_t.get("means2d") is not None and g_g.get("means2d") is not None and both.any():
        n_t = g_t["means2d"][both].norm(dim=-1)
        n_g = g_g["means2d"][both].norm(dim=-1)
        thr = float(torch.quantile(n_g.double().cpu(), 0.9))
        out["densify_signal"] = {
            "grad2d_norm_rel_l2": float((n_t - n_g).norm() / n_g.norm().clamp_min(1e-30)),
            "top10pct_agreement": float(((n_t > thr) == (n_g > thr)).double().mean()),
        }
    return out


def verdict(res):
    """Loose pass/fail summary; the raw numbers are what matter."""
    try:
        cmp_ = res["compare"]
        ok_fwd = (cmp_["colors"]["p999_abs"] < 1e-3 and cmp_["alphas"]["p999_abs"] < 1e-3
                  and cmp_["colors"]["mean_abs"] < 1e-4)
        ok_grad = all(v.get("rel_l2", 1.0) < 2e-2 and v.get("finite", False)
                      for k, v in cmp_["grads"].items())
        return {"forward_ok": bool(ok_fwd), "grads_ok": bool(ok_grad),
                "criteria": "colors/alphas p99.9 abs < 1e-3, colors mean abs < 1e-4; "
                            "every grad rel L2 < 2e-2 and finite"}
    except Exception as e:  # noqa: BLE001
        return {"error": repr(e)}


def _clean(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, torch.Tensor):
        return _clean(x.tolist())
    return x


def write(path, summary):
    data = json.dumps(_clean(summary), indent=2)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(data)
    os.replace(tmp, path)
    return data


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default="rasterizer_check.json", help="JSON output path")
    ap.add_argument("--quick", action="store_true", help="only the small scenes")
    ap.add_argument("--scenes", default="", help="comma-separated scene names (default: all)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repetitions per backend")
    ap.add_argument("--cpu-threads", type=int, default=2, help="threads for the CPU timing")
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU timing of our path")
    ap.add_argument("--cpu-max-pixels", type=int, default=250 * 190 * 2,
                    help="skip CPU timing for scenes with more pixels (C*H*W) than this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--self-test", action="store_true",
                    help="plumbing check without a GPU: compare torch path vs itself on CPU")
    args = ap.parse_args(argv)
    out_path = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out_path), exist_ok=True)

    cuda = torch.cuda.is_available()
    summary = {
        "script": "benchmarks/rasterizer_check.py",
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_available": cuda,
        "cpu_threads_for_cpu_timing": args.cpu_threads,
        "os_cpu_count": os.cpu_count(),
        "scenes": [],
    }
    try:
        import gsplat

        summary["gsplat"] = getattr(gsplat, "__version__", "?")
    except Exception as e:  # noqa: BLE001
        summary["gsplat"] = f"import failed: {e!r}"
    if cuda:
        summary["gpu"] = torch.cuda.get_device_name(0)
        summary["cuda_version"] = torch.version.cuda
        print(f"CUDA available: {summary['gpu']}; comparing torch path vs gsplat CUDA.",
              flush=True)
    else:
        print("CUDA NOT available: only timing our torch path on CPU; the comparison against "
              "gsplat's CUDA rasterization needs a GPU.", flush=True)
        summary["note"] = "no CUDA: comparison against gsplat skipped; CPU timings only"

    names = [s.strip() for s in args.scenes.split(",") if s.strip()]
    specs = [s for s in SCENES if (not names or s["name"] in names)
             and (not args.quick or s["name"] in QUICK)]
    if names and len(specs) != len(names):
        print(f"warning: unknown scene names in {names}; known: {[s['name'] for s in SCENES]}")
    device = torch.device("cuda") if cuda else None
    gsplat_ok = cuda
    if cuda:
        # first gsplat call: may JIT-compile its CUDA extension (minutes) -- time it apart
        print("warming up gsplat (its first call may JIT-compile CUDA kernels) ...", flush=True)
        t0 = time.perf_counter()
        try:
            spec0 = dict(SCENES[0], N=200, W=32, H=24)
            sc0 = make_scene(200, 32, 24, 1, None, (0.5, 0.9), 1.0)
            run_once(sc0, spec0, device, "gsplat")
            summary["gsplat_warmup_s"] = time.perf_counter() - t0
            print(f"gsplat OK ({summary['gsplat_warmup_s']:.1f} s)", flush=True)
        except Exception:  # noqa: BLE001
            gsplat_ok = False
            summary["gsplat_error"] = traceback.format_exc()
            summary["gsplat_warmup_s"] = time.perf_counter() - t0
            print("gsplat CUDA rasterization FAILED; only timing our torch path on CUDA:\n"
                  + summary["gsplat_error"], flush=True)
        write(out_path, summary)
    for spec in specs:
        res = {"spec": {k: v for k, v in spec.items()}}
        print(f"--- {spec['name']}: N={spec['N']} {spec['W']}x{spec['H']} C={spec['C']} "
              f"sh={spec['sh']} mode={spec.get('mode', 'RGB')}", flush=True)
        try:
            scene = make_scene(spec["N"], spec["W"], spec["H"], spec["C"], spec["sh"],
                               spec["opa"], spec["smul"], seed=args.seed,
                               bg=spec.get("bg", False))
        except Exception:  # noqa: BLE001
            res["error"] = traceback.format_exc()
            summary["scenes"].append(res)
            write(out_path, summary)
            continue
        if cuda:
            if gsplat_ok:
                try:
                    t0 = time.perf_counter()
                    res["compare"] = compare(scene, spec, device)
                    res["compare_s"] = time.perf_counter() - t0
                    res["verdict"] = verdict(res)
                except Exception:  # noqa: BLE001
                    res["compare_error"] = traceback.format_exc()
                    print(res["compare_error"], flush=True)
                torch.cuda.empty_cache()
            for backend in (["torch", "gsplat"] if gsplat_ok else ["torch"]):
                try:
                    res[f"time_cuda_{backend}"] = time_backend(scene, spec, device, backend,
                                                               args.repeats)
                except Exception:  # noqa: BLE001
                    res[f"time_cuda_{backend}_error"] = traceback.format_exc()
                    print(res[f"time_cuda_{backend}_error"], flush=True)
                torch.cuda.empty_cache()
            try:
                res["cuda_peak_mem_GB"] = torch.cuda.max_memory_allocated() / 1e9
                torch.cuda.reset_peak_memory_stats()
            except Exception:  # noqa: BLE001
                pass
        elif args.self_test:
            try:
                res["compare_selftest_cpu"] = compare(scene, spec, torch.device("cpu"), "torch")
                res["compare"] = res["compare_selftest_cpu"]
                res["verdict"] = verdict(res)
                del res["compare"]
            except Exception:  # noqa: BLE001
                res["compare_error"] = traceback.format_exc()
                print(res["compare_error"], flush=True)
        pixels = spec["C"] * spec["W"] * spec["H"]
        if not args.no_cpu and pixels <= args.cpu_max_pixels:
            n_threads = torch.get_num_threads()
            try:
                torch.set_num_threads(max(1, args.cpu_threads))
                res["time_cpu_torch"] = time_backend(scene, spec, torch.device("cpu"), "torch",
                                                     max(2, min(args.repeats, 3)))
            except Exception:  # noqa: BLE001
                res["time_cpu_torch_error"] = traceback.format_exc()
                print(res["time_cpu_torch_error"], flush=True)
            finally:
                torch.set_num_threads(n_threads)
        short = {k: v for k, v in res.items() if k.startswith("time") or k == "verdict"}
        print(json.dumps(_clean(short)), flush=True)
        summary["scenes"].append(res)
        write(out_path, summary)

    data = write(out_path, summary)
    print(data)
    print(f"wrote {out_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
