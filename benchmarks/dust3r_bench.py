"""DUSt3R backend benchmark: pair inference and global alignment, time and peak memory.

Random weights (the published ViT-Large 512 DPT shape, 571 M parameters) and synthetic 512x384
images; for 3, 10 and 30 images with the complete and the swin graph (window 3, cyclic), it
times (1) pair inference (encoder once per image, then decoders + DPT heads per directed pair,
bf16 autocast on CUDA, fp32 on CPU) and (2) global alignment (MST init + Adam, ``--niter``
iterations, on the alignment grid, every ``--stride``-th pixel), and records peak device memory
of each phase. Results print as a table and go to JSON (written after every case, so a cut-short
run keeps what it measured). Cases run small to large and are skipped once ``--budget-s`` is
spent; an out-of-memory or other failure is recorded for that case and the run goes on.

    python benchmarks/dust3r_bench.py                 # CUDA if available (H200 target, ~2-3 min)
    python benchmarks/dust3r_bench.py --tiny          # CPU smoke test with the tiny network

Needs only torch and numpy (plus this repository on the path; the script adds it).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path


import numpy as np  # noqa: E402
import torch  # noqa: E402

from fvgen.priors.dust3r.alignment import global_align  # noqa: E402
from fvgen.priors.dust3r.inference import infer_pairs, preprocess  # noqa: E402
from fvgen.priors.dust3r.model import Dust3rModelConfig, build_model, count_parameters  # noqa: E402
from fvgen.priors.dust3r.pairs import make_pairs  # noqa: E402


def synthetic_images(n: int, w: int, h: int, seed: int = 0) -> np.ndarray:
    """Smooth random colour fields (cheap, deterministic), [n, h, w, 3] in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, max(2, h // 32), max(2, w // 32), generator=g)
    img = torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)
    img = img + 0.05 * torch.rand(n, 3, h, w, generator=g)
    return img.clamp(0, 1).permute(0, 2, 3, 1).numpy().astype(np.float32)


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _reset_peak(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def _peak_gb(dev):
    return torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None


def _rss_gb():
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB
    except Exception:
        return None


def run_case(model, dev, n, graph, args, w, h, long_side):
    imgs = synthetic_images(n, w, h, seed=n)
    x, _, geom = preprocess(imgs, long_side, model.cfg.patch_size)
    pairs = make_pairs(n, graph, winsize=args.winsize, cyclic=True)
    rec = {"images": n, "graph": graph if graph != "swin" else f"swin-{args.winsize}-cyclic",
           "pairs_directed": len(pairs), "net_size": list(geom.net_size), "batch_size": args.batch_size,
           "align_stride": args.stride, "niter": args.niter}
    _reset_peak(dev)
    base = torch.cuda.memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    t = time.perf_counter()
    pred = infer_pairs(model, x, pairs, args.batch_size, dev, args.stride)
    _sync(dev)
    rec["inference_s"] = time.perf_counter() - t
    rec["encode_s"] = pred.timings["encode_s"]
    rec["inference_per_pair_ms"] = 1000 * rec["inference_s"] / len(pairs)
    rec["inference_peak_gb"] = _peak_gb(dev)
    rec["weights_gb"] = base
    pred_ok = all(bool(torch.isfinite(t_).all()) for t_ in (pred.pts_i, pred.pts_j, pred.conf_i, pred.conf_j))
    rec["predictions_finite"] = pred_ok
    rec["predictions_host_gb"] = sum(t_.numel() * 4 for t_ in (pred.pts_i, pred.pts_j, pred.conf_i, pred.conf_j)) / 2**30
    _reset_peak(dev)
    t = time.perf_counter()
    res = global_align(n, pairs, pred.pts_i, pred.conf_i, pred.pts_j, pred.conf_j, pred.pixel_grid(), geom.net_size,
                       niter=args.niter, device=dev)
    _sync(dev)
    rec["alignment_s"] = time.perf_counter() - t
    rec["alignment_init_s"] = res.info["init_s"]
    rec["alignment_per_iter_ms"] = 1000 * (rec["alignment_s"] - res.info["init_s"]) / max(1, args.niter)
    rec["alignment_peak_gb"] = _peak_gb(dev)
    rec["loss_init"], rec["loss_final"] = res.info["loss_init"], res.info["loss_final"]
    rec["outputs_finite"] = bool(np.isfinite(res.c2w).all() and np.isfinite(res.focal).all())
    rec["total_s"] = rec["inference_s"] + rec["alignment_s"]
    del pred, res
    return rec


def fmt(v, p=2):
    return "-" if v is None else (f"{v:.{p}f}" if isinstance(v, float) else str(v))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny network on CPU (smoke test)")
    ap.add_argument("--device", default=None, help="default: cuda if available (cpu with --tiny)")
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="image counts (default 3 10 30; tiny: 3 10)")
    ap.add_argument("--graphs", nargs="+", default=["complete", "swin"])
    ap.add_argument("--winsize", type=int, default=3)
    ap.add_argument("--niter", type=int, default=None, help="alignment iterations (default 300; tiny: 20)")
    ap.add_argument("--strides", type=int, nargs="+", default=None,
                    help="alignment grid strides; 2 is the backend's default, 1 is DUSt3R's full resolution "
                         "(default: 2 1 on CUDA, all stride-2 cases first; 2 with --tiny)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--budget-s", type=float, default=170.0, help="skip remaining cases after this much time")
    ap.add_argument("--out", default=None,
                    help="JSON output (default $OUT/dust3r_bench[_tiny].json if $OUT is set, else next to this script)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    dev = torch.device(args.device or ("cpu" if args.tiny or not torch.cuda.is_available() else "cuda"))
    sizes = args.sizes or ([3, 10] if args.tiny else [3, 10, 30])
    args.niter = args.niter if args.niter is not None else (20 if args.tiny else 300)
    name = "dust3r_bench_tiny.json" if args.tiny else "dust3r_bench.json"
    out = Path(args.out or (Path(os.environ["OUT"]) / name if os.environ.get("OUT") else Path(__file__).with_name(name)))
    cfg = Dust3rModelConfig.tiny() if args.tiny else Dust3rModelConfig.large_512()
    w, h = (80, 60) if args.tiny else (1024, 768)  # network input: 64x48 (tiny) / 512x384
    long_side = cfg.img_size
    torch.manual_seed(0)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # alignment stays in true fp32
    t = time.perf_counter()
    model = build_model(cfg, dev).eval()
    build_s = time.perf_counter() - t
    meta = {"device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor(),
            "torch": torch.__version__, "model": "tiny" if args.tiny else "large_512 (random weights)",
            "parameters": count_parameters(model), "build_s": build_s,
            "dtype": "bf16 autocast" if dev.type == "cuda" else "fp32", "niter": args.niter,
            "batch_size": args.batch_size, "image_size_in": [w, h]}
    print(json.dumps(meta), flush=True)
    # warm-up: kernels, cuDNN / SDPA selection, dynamo import in the optimiser
    try:
        t = time.perf_counter()
        run_case(model, dev, 2, "complete", argparse.Namespace(**{**vars(args), "niter": 2, "stride": 2}), w, h,
                 long_side)
        meta["warmup_s"] = time.perf_counter() - t
    except Exception as e:  # keep going; the cases will report the problem
        meta["warmup_error"] = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    results = []

    def dump():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))

    dump()
    strides = args.strides or ([2] if args.tiny or dev.type != "cuda" else [2, 1])
    for stride, n, graph in [(st, n, g) for st in strides for n in sizes for g in args.graphs]:
        args.stride = stride
        elapsed = time.perf_counter() - t_start
        if elapsed > args.budget_s:
            results.append({"images": n, "graph": graph, "align_stride": stride,
                            "skipped": f"time budget spent ({elapsed:.0f} s)"})
            dump()
            continue
        try:
            rec = run_case(model, dev, n, graph, args, w, h, long_side)
        except Exception as e:  # OOM or anything else: record it, free memory, go on
            rec = {"images": n, "graph": graph, "align_stride": stride,
                   "error": f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"}
            traceback.print_exc()
        gc.collect()  # after the except block: the traceback no longer holds the case's tensors
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        rec["host_peak_rss_gb"] = _rss_gb()
        results.append(rec)
        print(json.dumps(rec), flush=True)
        dump()
    meta["wall_s"] = time.perf_counter() - t_start
    dump()
    print()
    print(f"| images | graph | stride | pairs | inference s | ms/pair | inf. peak GB | align s ({args.niter} it) "
          f"| ms/iter | align peak GB | loss init -> final |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "inference_s" not in r:
            print(f"| {r['images']} | {r['graph']} | {r.get('align_stride')} | {r.get('error') or r.get('skipped')} "
                  "|||||||")
            continue
        print(f"| {r['images']} | {r['graph']} | {r['align_stride']} | {r['pairs_directed']} | {fmt(r['inference_s'])} | "
              f"{fmt(r['inference_per_pair_ms'], 1)} | {fmt(r['inference_peak_gb'])} | {fmt(r['alignment_s'])} | "
              f"{fmt(r['alignment_per_iter_ms'], 1)} | {fmt(r['alignment_peak_gb'])} | "
              f"{r['loss_init']:.4g} -> {r['loss_final']:.4g} |")
    print(f"\nwall {meta['wall_s']:.1f} s; JSON: {out}")
    bad = [r for r in results if "error" in r]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
