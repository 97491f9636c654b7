"""Sampling time per clip: the teacher (50 steps, CFG 3.0: two UNet passes a step) against the
4-step student (no CFG: 4 UNet passes), with random weights (timing only), and the student
against its floor.

Per preset (default ``embedded`` and ``paper``, 512x320x16): seconds per clip of the teacher's
sampler (``fvgen.videomodel.sample.sample_latents``: conditioning and the harmonic fill, the steps,
decoding) after a warm-up, the median of ``--repeats`` runs; the same for the student; their
ratio (issue 19's target <= 0.08, goal 0.05); the student's 4 UNet passes alone; and its floor:
the FLOPs of 4 UNet passes (``torch.utils.flop_counter``, attention through the math kernel so its
matmuls count) divided by the matmul rate measured on the same device (bf16 on CUDA, where the
sampler autocasts to bf16; fp32 on the CPU, where it does not). With ``--compile`` the student's
UNet is also compiled (``torch.compile`` modes, e.g. ``reduce-overhead`` = CUDA graphs) and timed
the same way, compile time reported apart; a mode "pays" when it is at least 5 % faster.
With ``--cuda-graph`` the teacher and the student sampler are also run through
``fvgen.videomodel.graphed.GraphedSampler`` (conditioning, every step and decoding captured as one
CUDA graph per input shape, replayed; both sides graphed, so their ratio ``ratio_graph`` is fair),
with the capture's seconds (warm-up, capture, first replay) and the largest difference to the eager
clip of the same seed (bf16 rounding only) beside the eager figures.
``--budget-s`` skips what is left of the optional parts (graphs, then compile) once the run has
taken that long (a graphed part is skipped when its estimated cost would cross it).

GPU (one device call, < 8 minutes on one H100; diffusers as carried wheels)::

    WHEELS=.gpu/wtrain bash benchmarks/gpu_run.sh sampling
    (= python benchmarks/sampling.py --json OUT/sampling_gpu.json --compile reduce-overhead --budget-s 330)
    python benchmarks/sampling.py --json OUT/sampling_graph.json --cuda-graph --budget-s 400

CPU (embedded only, fewer repeats)::

    python benchmarks/sampling.py --device cpu --presets embedded --teacher-repeats 1 --repeats 3 \
        --json benchmarks/results/sampling_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

# idle OpenMP threads sleep instead of spinning (as the CLI and the tests set it): spinning threads
# slow the CPU timings many times over on a shared machine; must precede the first torch import
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402


from fvgen.videomodel.graphed import GraphedSampler  # noqa: E402
from fvgen.videomodel.model import TeacherModel  # noqa: E402
from fvgen.videomodel.sample import sample_latents  # noqa: E402

T0 = time.perf_counter()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def clip_inputs(model: TeacherModel, device: str):
    p = model.preset
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(1, 3, p.height, p.width, generator=g) * 2 - 1
    warp = torch.rand(1, p.frames, 3, p.height, p.width, generator=g) * 2 - 1
    mask = (torch.rand(1, p.frames, 1, p.height, p.width, generator=g) > 0.3).float()
    return ref.to(device), warp.to(device), mask.to(device)


def time_sampler(model: TeacherModel, steps: int, cfg: float, device: str, repeats: int) -> list[float]:
    """Seconds of ``repeats`` whole sampling runs of one clip (after the caller's warm-up)."""
    ref, warp, mask = clip_inputs(model, device)
    out = []
    for i in range(repeats):
        sync(device)
        t = time.perf_counter()
        with torch.no_grad():
            sample_latents(model, ref, warp, mask, steps=steps, cfg=cfg, autocast=device == "cuda",
                           generator=torch.Generator().manual_seed(i))
        sync(device)
        out.append(time.perf_counter() - t)
    return out


def time_graphed(model: TeacherModel, steps: int, cfg: float, device: str, repeats: int,
                 compile_fill: bool = False) -> dict:
    """The sampler as one CUDA graph (:class:`GraphedSampler`): the first call's seconds (warm-up on a
    side stream, capture, first replay), ``repeats`` replays with fresh noise, and the largest
    difference of the first clip to the eager sampler's for the same seed."""
    ref, warp, mask = clip_inputs(model, device)
    sampler = GraphedSampler(model, steps=steps, cfg=cfg, compile_fill=compile_fill)
    sync(device)
    t = time.perf_counter()
    first = sampler(ref, warp, mask, torch.Generator().manual_seed(0))
    sync(device)
    capture = time.perf_counter() - t
    out = {"graph_captured": bool(sampler.graphs), "graph_capture_s": round(capture, 2)}
    if sampler.capture_error:  # it fell back to eager: no graph figures to report
        return {**out, "graph_error": sampler.capture_error}
    seconds = []
    for i in range(repeats):
        sync(device)
        t = time.perf_counter()
        sampler(ref, warp, mask, torch.Generator().manual_seed(i))
        sync(device)
        seconds.append(time.perf_counter() - t)
    with torch.no_grad():
        eager = sample_latents(model, ref, warp, mask, steps=steps, cfg=cfg, autocast=device == "cuda",
                               generator=torch.Generator().manual_seed(0))
    out.update(graph_seconds=[round(x, 4) for x in seconds], graph_median_s=med(seconds),
               graph_max_abs_diff=float((first - eager).abs().max()))
    del sampler
    return out


def bench_graphed(row: dict, a, log, save) -> None:
    """Teacher and student through :class:`GraphedSampler`, after every preset's eager figures are
    saved; a part whose estimated cost (its eager runs plus three for warm-up, capture and the eager
    reference) would cross ``--budget-s`` is skipped, so a slow one costs nothing but its row."""
    name, dev = row["preset"], a.device
    model = TeacherModel.random(name).to(dev).eval()
    parts = (("teacher", a.teacher_steps, a.cfg, a.teacher_repeats), ("student", 4, 1.0, a.repeats))
    for part, steps, cfg, repeats in parts:
        side = row[part]
        elapsed = time.perf_counter() - T0
        estimate = (repeats + 3) * side["median_s"]
        if elapsed + estimate > a.budget_s:
            side["graph_skipped"] = (f"at {elapsed:.0f} s an estimated {estimate:.0f} s would pass "
                                     f"--budget-s {a.budget_s}")
            log(f"{name}: {part} graph skipped ({side['graph_skipped']})")
            save()
            continue
        side["graph_started_at_s"] = round(elapsed, 1)  # left as is if the job is killed
        save()
        try:
            side.update(time_graphed(model, steps, cfg, dev, repeats))
        except Exception as e:  # noqa: BLE001 (out of memory, say: a result, not a crash)
            side["graph_error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
            log(f"{name}: {part} graph failed: {side['graph_error']}")
            save()
            continue
        finally:
            if dev == "cuda":
                torch.cuda.empty_cache()
        how = "as one CUDA graph" if side["graph_captured"] else "through GraphedSampler (eager, no CUDA)"
        log(f"{name}: {part} {how}: {side['graph_median_s']} s (eager {side['median_s']} s; capture "
            f"{side['graph_capture_s']} s; max |graph - eager| {side['graph_max_abs_diff']:.2e})")
        save()
        if a.compile_fill and side["graph_captured"]:  # the same graph with the fill's sweeps fused
            try:
                side["fused_fill"] = time_graphed(model, steps, cfg, dev, repeats, compile_fill=True)
            except Exception as e:  # noqa: BLE001
                side["fused_fill"] = {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"}
            f = side["fused_fill"]
            log(f"{name}: {part} graphed with fused fill sweeps: {f.get('graph_median_s', f.get('error'))} s "
                f"(capture with compile {f.get('graph_capture_s')} s; max |graph - eager| "
                f"{f.get('graph_max_abs_diff')})")
            save()
    if "graph_median_s" in row["teacher"] and "graph_median_s" in row["student"]:
        row["ratio_graph"] = round(row["student"]["graph_median_s"] / row["teacher"]["graph_median_s"], 4)
        log(f"{name}: student/teacher, both graphed: {row['ratio_graph']}")
    fused = [row[part].get("fused_fill", {}).get("graph_median_s") for part in ("teacher", "student")]
    if all(fused):
        row["ratio_graph_fused_fill"] = round(fused[1] / fused[0], 4)
        log(f"{name}: student/teacher, both graphed with fused fill sweeps: {row['ratio_graph_fused_fill']}")
    save()
    del model
    if dev == "cuda":
        torch.cuda.empty_cache()


def set_best(row: dict) -> None:
    """The student's fastest way (eager, a compile mode, the CUDA graph) and its ratio to the teacher
    run the same way where the teacher was (graphed against graphed), else to the eager teacher."""
    student, teacher, floor = row["student"], row["teacher"], row["floor"]["floor_s"]
    ways = [("eager", student["median_s"], "eager", teacher["median_s"])]
    ways += [(k, v["median_s"], "eager", teacher["median_s"])
             for k, v in student.get("compiled", {}).items() if "median_s" in v]
    if student.get("graph_captured") and "graph_median_s" in student:  # not its eager fallback (CPU)
        graphed_teacher = teacher.get("graph_captured") and "graph_median_s" in teacher
        ways.append(("cuda-graph", student["graph_median_s"], "cuda-graph" if graphed_teacher else "eager",
                     teacher["graph_median_s"] if graphed_teacher else teacher["median_s"]))
    fused, fused_teacher = student.get("fused_fill", {}), teacher.get("fused_fill", {})
    if "graph_median_s" in fused and "graph_median_s" in fused_teacher:  # both graphed with the fused fill
        ways.append(("cuda-graph, fused fill", fused["graph_median_s"], "cuda-graph, fused fill",
                     fused_teacher["graph_median_s"]))
    mode, s, teacher_mode, t = min(ways, key=lambda w: w[1])
    student["best"] = {"mode": mode, "median_s": s, "ratio_to_teacher": round(s / t, 4), "teacher_mode": teacher_mode,
                       "over_floor": round(s / floor, 2)}


def unet_inputs(model: TeacherModel, device: str):
    p = model.preset
    ref, warp, mask = clip_inputs(model, device)
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        cat, tokens, _ = model.condition(ref, warp, mask)
    x = torch.randn(1, p.frames, p.latent_channels, *cat.shape[-2:], device=device)
    return x, cat, tokens


def time_unet_passes(model: TeacherModel, device: str, passes: int, repeats: int) -> list[float]:
    """Seconds of ``passes`` bare UNet passes (batch 1, the student's timesteps), ``repeats`` times."""
    x, cat, tokens = unet_inputs(model, device)
    ts = [999, 749, 499, 249]
    out = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            for k in range(passes):
                model.denoise(x, torch.tensor([ts[k % 4]], device=device), cat, tokens)
        sync(device)
        out.append(time.perf_counter() - t)
    return out


def unet_pass_flop_counter(model: TeacherModel, device: str):
    """A FlopCounterMode run over one UNet pass (batch 1), attention through the math kernel (its
    matmuls counted): ``get_total_flops()``, ``get_flop_counts()["Global"]`` by operator."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    x, cat, tokens = unet_inputs(model, device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter, \
            torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        model.denoise(x, torch.tensor([499], device=device), cat, tokens)
    return counter


def unet_pass_flops(model: TeacherModel, device: str) -> int:
    """FLOPs of one UNet pass (batch 1)."""
    return int(unet_pass_flop_counter(model, device).get_total_flops())


def matmul_rate(device: str) -> dict:
    """Measured dense matmul FLOP/s on this device: bf16 8192^3 on CUDA, fp32 2048^3 on the CPU."""
    n, dtype = (8192, torch.bfloat16) if device == "cuda" else (2048, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    reps = 20 if device == "cuda" else 3
    times = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t)
    s = statistics.median(times)
    return {"n": n, "dtype": str(dtype).replace("torch.", ""), "tflops": round(2 * n ** 3 / s / 1e12, 2),
            "flops_per_s": 2 * n ** 3 / s}


def med(xs: list[float]) -> float:
    return round(statistics.median(xs), 4)


def bench_preset(name: str, a, rate: dict, log) -> dict:
    dev = a.device
    model = TeacherModel.random(name).to(dev).eval()
    p = model.preset
    params = sum(x.numel() for m in model.modules().values() for x in m.parameters())
    row = {"preset": name, "clip": f"{p.width}x{p.height}x{p.frames}", "params_M": round(params / 1e6, 1),
           "space": p.space, "teacher": {"steps": a.teacher_steps, "cfg": a.cfg}, "student": {"steps": 4, "cfg": 1.0}}
    # warm-up: kernels, allocator, cuDNN autotuning (both batch sizes: CFG runs 2 clips a pass)
    time_sampler(model, 2, a.cfg, dev, 1)
    time_sampler(model, 2, 1.0, dev, 1)
    ts = time_sampler(model, a.teacher_steps, a.cfg, dev, a.teacher_repeats)
    row["teacher"].update(seconds=[round(x, 4) for x in ts], median_s=med(ts))
    log(f"{name}: teacher {a.teacher_steps} steps cfg {a.cfg}: {med(ts)} s")
    ss = time_sampler(model, 4, 1.0, dev, a.repeats)
    row["student"].update(seconds=[round(x, 4) for x in ss], median_s=med(ss))
    us = time_unet_passes(model, dev, 4, a.repeats)
    row["student"]["unet_4_passes_median_s"] = med(us)
    if a.channels_last:  # cuDNN's NHWC convolutions: the compute-bound (paper-size) lever
        # the 2-D convolutions only: the temporal layers' 3-D weights have no channels_last layout
        convs = [m for m in model.unet.modules() if isinstance(m, torch.nn.Conv2d)]
        for m in convs:
            m.to(memory_format=torch.channels_last)
        time_unet_passes(model, dev, 4, 1)  # cuDNN autotuning for the new layout
        cl = time_unet_passes(model, dev, 4, a.repeats)
        row["student"]["unet_4_passes_channels_last_median_s"] = med(cl)
        log(f"{name}: student's 4 UNet passes, channels_last 2-D convolutions: {med(cl)} s (contiguous {med(us)} s)")
        for m in convs:
            m.to(memory_format=torch.contiguous_format)
    if a.bf16_weights and dev == "cuda":  # the weights held in bf16 (fvgen.videomodel.model.inference_dtype): no cast at all
        model.to(dtype=torch.bfloat16)
        time_sampler(model, 4, 1.0, dev, 1)
        bs = time_sampler(model, 4, 1.0, dev, a.repeats)
        bu = time_unet_passes(model, dev, 4, a.repeats)
        row["student"].update(bf16_weights_median_s=med(bs), unet_4_passes_bf16_weights_median_s=med(bu))
        log(f"{name}: student with bf16 weights: {med(bs)} s (UNet passes {med(bu)} s; fp32 weights {med(ss)} / "
            f"{med(us)} s)")
        model.to(dtype=torch.float32)
    row["ratio_student_to_teacher"] = round(med(ss) / med(ts), 4)
    flops = unet_pass_flops(model, dev)
    floor = 4 * flops / rate["flops_per_s"]
    row["floor"] = {"gflops_per_unet_pass": round(flops / 1e9, 1), "student_4_passes_gflops": round(4 * flops / 1e9, 1),
                    "rate_tflops": rate["tflops"], "floor_s": round(floor, 4),
                    "student_over_floor": round(med(ss) / floor, 2),
                    "student_unet_over_floor": round(med(us) / floor, 2)}
    log(f"{name}: student 4 steps: {med(ss)} s (UNet passes {med(us)} s), ratio {row['ratio_student_to_teacher']}, "
        f"floor {floor:.4f} s ({flops / 1e9:.1f} GFLOP/pass at {rate['tflops']} TFLOP/s)")
    if dev == "cuda":
        row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    del model
    if dev == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return row


# the UNet's repeated blocks (diffusers' UNetSpatioTemporalConditionModel): spatial + temporal ResNets, and
# the spatial + temporal transformers; everything else (embeddings, the in/out convolutions, resamplers) stays eager
REPEATED_BLOCKS = ("SpatioTemporalResBlock", "TransformerSpatioTemporalModel")


def compile_repeated_blocks(unet, mode: str | None) -> list[torch.nn.Module]:
    """Regional compilation (diffusers' ``ModelMixin.compile_repeated_blocks``): each of the UNet's
    ``REPEATED_BLOCKS`` compiled in place, blocks of the same shapes sharing one compiled graph. The
    compiled blocks are returned for :func:`uncompile`."""
    unet._repeated_blocks = REPEATED_BLOCKS
    unet.compile_repeated_blocks(mode=mode)
    return [m for m in unet.modules() if type(m).__name__ in REPEATED_BLOCKS]


def uncompile(blocks: list[torch.nn.Module]) -> None:
    for m in blocks:
        m._compiled_call_impl = None


def bench_compiled(row: dict, a, log, save) -> None:
    """The student's sampler with its UNet compiled (each mode of ``--compile``), after every
    preset's eager figures are saved: a compile that runs past the job's time limit costs only itself."""
    name, dev = row["preset"], a.device
    eager_s, floor = row["student"]["median_s"], row["floor"]["floor_s"]
    model = TeacherModel.random(name).to(dev).eval()
    eager_unet = model.unet
    compiled = row["student"].setdefault("compiled", {})
    for mode in a.compile:
        if time.perf_counter() - T0 > a.budget_s:
            compiled[mode] = {"skipped": f"run past --budget-s {a.budget_s}"}
            continue
        torch._dynamo.reset()
        regional = mode.split(":")[0] == "regional"
        inner = mode.split(":", 1)[1] if ":" in mode else "default"
        if regional:  # each repeated block compiled on its own: minutes less compiling than the whole UNet
            # a block class compiles once per parameter shape (the guards are on its weights), and the
            # paper UNet's blocks come in more widths than dynamo's default limit of 8: past it the rest
            # stay eager (H100, 2026-12-07: the limit hit, 2.84x the floor)
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
            blocks = compile_repeated_blocks(eager_unet, None if inner == "default" else inner)
        else:
            model.unet = torch.compile(eager_unet, mode=None if mode == "default" else mode)
        compiled[mode] = {"started_at_s": round(time.perf_counter() - T0, 1)}  # left as is if the job is killed
        save()
        t = time.perf_counter()
        try:
            time_sampler(model, 4, 1.0, dev, 2)  # compiles (and records CUDA graphs) on these runs
        except Exception as e:  # noqa: BLE001 (a compiler failure is a result, not a crash)
            compiled[mode] = {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"}
            model.unet = eager_unet
            if regional:
                uncompile(blocks)
            continue
        warm = time.perf_counter() - t
        cs = time_sampler(model, 4, 1.0, dev, a.repeats)
        compiled[mode] = {"compile_and_warmup_s": round(warm, 1), "seconds": [round(x, 4) for x in cs],
                          "median_s": med(cs), "speedup": round(eager_s / med(cs), 3),
                          "pays": med(cs) < 0.95 * eager_s, "over_floor": round(med(cs) / floor, 2)}
        if regional:
            compiled[mode]["blocks"] = len(blocks)
            us = time_unet_passes(model, dev, 4, a.repeats)
            compiled[mode].update(unet_4_passes_median_s=med(us), unet_over_floor=round(med(us) / floor, 2))
            uncompile(blocks)
        log(f"{name}: student compiled ({mode}): {med(cs)} s (x{eager_s / med(cs):.2f}; compile {warm:.0f} s)")
        model.unet = eager_unet
        save()
    set_best(row)
    save()
    del model, eager_unet
    if dev == "cuda":
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["embedded", "paper"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--teacher-steps", type=int, default=50)
    ap.add_argument("--cfg", type=float, default=3.0, help="the teacher's guidance (two UNet passes a step)")
    ap.add_argument("--repeats", type=int, default=5, help="student runs (median)")
    ap.add_argument("--teacher-repeats", type=int, default=3, help="teacher runs (median)")
    ap.add_argument("--compile", nargs="*", default=[], help="torch.compile modes to time the student with "
                    "(default, reduce-overhead, max-autotune-no-cudagraphs; regional[:MODE] compiles only the "
                    "UNet's repeated blocks, each once)")
    ap.add_argument("--cuda-graph", action="store_true", help="also time teacher and student as one CUDA graph "
                    "each (fvgen.videomodel.graphed.GraphedSampler)")
    ap.add_argument("--compile-fill", action="store_true", help="with --cuda-graph: also time both graphs with "
                    "the harmonic fill's sweeps fused by torch.compile (fvgen.videomodel.fill.compiled_sweeps)")
    ap.add_argument("--channels-last", action="store_true", help="also time the student's 4 UNet passes with the "
                    "UNet's 2-D convolutions in channels_last memory format")
    ap.add_argument("--bf16-weights", action="store_true", help="also time the student with its weights held "
                    "in bf16 (as fvgen generates on CUDA) instead of fp32 cast by autocast")
    ap.add_argument("--budget-s", type=float, default=400.0,
                    help="skip the remaining graph and compile runs after this long")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    def log(msg):
        print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", flush=True)

    rate = matmul_rate(a.device)
    log(f"matmul rate: {rate['tflops']} TFLOP/s ({rate['dtype']}, {rate['n']}^3)")
    rows: list[dict] = []
    res = {"host": platform.node(), "device": a.device, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
           "gpu": torch.cuda.get_device_name() if a.device == "cuda" else None,
           "cpu_threads": torch.get_num_threads(), "matmul": {k: v for k, v in rate.items() if k != "flops_per_s"},
           "rows": rows}

    def save():  # after every measurement: a job killed at its time limit keeps what it measured
        res["seconds_total"] = round(time.perf_counter() - T0, 1)
        if a.json:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(res, indent=1))

    for name in a.presets:
        rows.append(bench_preset(name, a, rate, log))
        save()
    for row in rows if a.cuda_graph else []:
        bench_graphed(row, a, log, save)
        set_best(row)
        save()
    for row in rows if a.compile else []:
        bench_compiled(row, a, log, save)
    save()
    print(json.dumps({r["preset"]: {"teacher_s": r["teacher"]["median_s"], "student_s": r["student"]["median_s"],
                                    "ratio": r["ratio_student_to_teacher"], "floor_s": r["floor"]["floor_s"],
                                    **{k: r[k] for k in ("ratio_graph", "ratio_graph_fused_fill") if k in r}}
                      for r in rows}))
    return res


if __name__ == "__main__":
    main()
