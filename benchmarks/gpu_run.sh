#!/usr/bin/env bash
# One device call of GPU benchmarks, run on the device machine from the repository root:
#
#   [WHEELS="DIR..."] [OUT=DIR] bash benchmarks/gpu_run.sh JOB[=LIMIT_S]... [-- LIMIT_S CMD...]
#
# installs the carried wheels (WHEELS, see gpu_common.sh), prints the card, runs the named jobs in
# order, each under its time limit (the default below, or JOB=LIMIT_S), then the command after `--`
# if one is given, and leaves every JSON and log in $OUT (default /tmp/out). A job that fails or
# runs out of time is reported (`== rc N`) and the next one still runs. What each job feeds:
# benchmarks/README.md; the figures: benchmarks/RESULTS.md.
#
# Jobs (default limit in seconds) and the folders they read (carried, ignored by git):
#   gsplat-warmup (200)   compile gsplat's CUDA kernels once, so that no timed job pays for it
#   rasterizer (150)      rasterizer_check.py: our torch rasterizer against gsplat's, --no-cpu --repeats 3
#   fit-speed (100)       fit_speed.py on $PRIORS (default $RUNS/fern-gt-default/priors), 3000 iterations
#   eval (230)            eval_scenes.py on $DATA, runs cached under $RUNS (priors made on the CPU with
#                         --priors-only); $ITERATIONS (one number) overrides the preset's; $GENERATORS
#                         (default "none") and $EVAL_SET (preset overrides, e.g. "eval.align_test_poses=true")
#                         as eval_scenes.py's --generators and --set; $POSES (e.g. "gt"; default: both);
#                         eval_default.json
#   eval-variants (200 per variant)  eval_scenes.py once per variant of $VARIANTS ("OVERRIDES;OVERRIDES;...",
#                         "-" for the preset as it is), with $GENERATORS and $POSES: eval_variant_N.json
#   eval-random (90)      the same for fern, ground-truth poses, --init random: eval_random_fern.json
#   eval-iterations (200 per count)  eval_scenes.py --poses gt --iterations N for N in $ITERATIONS
#                         (default "2000 3000"): eval_gt_N.json
#   reconstruct (120)     fvgen reconstruct $FERN3 --views 3 into $RECON_OUT (default /tmp/r_fern), with
#                         $PIPELINE_PRESET if set, then the unchanged re-run (60 s):
#                         reconstruct_first_run.json, reconstruct_rerun.json
#   dust3r (240)          dust3r_bench.py, random weights: dust3r_bench.json
#   ddp-throughput (150 per count)  teacher training throughput, torchrun over $NPROCS GPUs
#                         (default "1 2"; a multi-GPU kind), --benchmark 30 --batch-size 8: bench_N.log
#   warp-test (200)       the gsplat point-warp tests of $WARP_TESTS (default tests/render/test_points_render.py)
#   colmap-test (120)     tests/priors/test_colmap_mvs.py (its GPU test runs real PatchMatch): colmap_test.log
#   colmap-mvs (420)      colmap_mvs.py on $DATA: COLMAP PatchMatch (defaults and $COLMAP_VARIANTS) against
#                         the plane sweep at the 3-view splits, GT cameras: colmap_mvs.json, colmap_mvs.log
#                         ($COLMAP_MVS_ARGS: more colmap_mvs.py options, e.g. --sweep ... --union sweep+colmap)
#   Both need pycolmap-cuda12: COLMAP_CUDA=DIR installs it first (benchmarks/gpu_colmap_mvs.sh).
#   sampling (470)        sampling.py: teacher (50 steps + CFG) against the 4-step student, embedded and paper
#                         presets, random weights, the student's FLOP floor, torch.compile $COMPILE (default
#                         reduce-overhead; compile runs skipped past 330 s): sampling_gpu.json (< 8 min, H100)
#   viewcrafter (300)     viewcrafter_speed.py: the ViewCrafter-compatible model, random weights, bf16, 512 and 1024
#                         clips at 50 steps + CFG and at 4 steps: viewcrafter_speed.json (3-4 min, H100)
#
# Folders: DATA (default .gpu/datasets: eval_scenes.py --copy-data), RUNS (.gpu/eval_runs),
# FERN3 (.gpu/fern3: fern images 1, 10, 19). Example, the fit and evaluation figures of 2026-11-29:
#   WHEELS=.gpu/whl1 bash benchmarks/gpu_run.sh gsplat-warmup rasterizer fit-speed eval eval-random
set -u
source benchmarks/gpu_common.sh
OUT=${OUT:-/tmp/out}
DATA=${DATA:-.gpu/datasets}
RUNS=${RUNS:-.gpu/eval_runs}
FERN3=${FERN3:-.gpu/fern3}
RECON_OUT=${RECON_OUT:-/tmp/r_fern}
mkdir -p "$OUT"

# a tiny render that makes gsplat compile its kernels (a bash function cannot run under timeout)
GSPLAT_WARMUP='
import time, torch, gsplat
start = time.time()
means = torch.randn(100, 3, device="cuda"); means[:, 2] += 5
K = torch.tensor([[50.0, 0, 32], [0, 50, 24], [0, 0, 1]], device="cuda")[None]
gsplat.rasterization(means, torch.randn(100, 4, device="cuda"), torch.rand(100, 3, device="cuda") * 0.1,
                     torch.rand(100, device="cuda"), torch.rand(100, 3, device="cuda"),
                     torch.eye(4, device="cuda")[None], K, 64, 48)
torch.cuda.synchronize()
print("gsplat kernels ready", round(time.time() - start, 1), "s")'

# keep what the evaluation runs wrote (metrics, run records, a few comparison images)
collect_runs() {
  tar czf "$OUT/eval_runs.tgz" "$RUNS"/*/metrics.json "$RUNS"/*/run.json "$RUNS"/*/compare/*0[0-2]*.png 2>/dev/null
}

run_job() {  # run_job NAME LIMIT_S
  local name=$1 limit=$2 n
  case "$name" in
    gsplat-warmup) step "$limit" $PY -c "$GSPLAT_WARMUP" ;;
    rasterizer)
      step "$limit" $PY benchmarks/rasterizer_check.py "$OUT/rasterizer_check.json" --no-cpu --repeats 3 \
        > "$OUT/rasterizer_check.log" 2>&1
      tail -n 5 "$OUT/rasterizer_check.log" ;;
    fit-speed)
      step "$limit" $PY benchmarks/fit_speed.py "${PRIORS:-$RUNS/fern-gt-default/priors}" --iterations 3000 \
        --json "$OUT/fit_speed.json" ;;
    eval)
      step "$limit" $PY benchmarks/eval_scenes.py --data "$DATA" --out "$RUNS" --device cuda \
        ${ITERATIONS:+--iterations "$ITERATIONS"} --generators ${GENERATORS:-none} ${EVAL_SET:+--set $EVAL_SET} \
        ${POSES:+--poses $POSES} \
        --json "$OUT/eval_default.json" 2>&1 | grep -v -i warn
      collect_runs ;;
    eval-variants)
      # one eval_scenes.py run per variant of $VARIANTS (variants separated by ";", each a space-separated
      # list of preset overrides, "-" for none): eval_variant_N.json, N counting from 0
      n=0
      local variant variants
      IFS=";" read -ra variants <<< "$VARIANTS"
      for variant in "${variants[@]}"; do
        variant=$(echo $variant)
        [ "$variant" = "-" ] && variant=""
        step "$limit" $PY benchmarks/eval_scenes.py --data "$DATA" --out "$RUNS" --device cuda \
          --generators ${GENERATORS:-none} ${POSES:+--poses $POSES} ${variant:+--set $variant} \
          --json "$OUT/eval_variant_$n.json" 2>&1 | grep -v -i warn | tail -n 8
        n=$((n + 1))
      done
      collect_runs ;;
    eval-random)
      step "$limit" $PY benchmarks/eval_scenes.py --data "$DATA" --out "$RUNS" --device cuda --scenes fern \
        --poses gt --init random --json "$OUT/eval_random_fern.json" ;;
    eval-iterations)
      for n in ${ITERATIONS:-2000 3000}; do
        step "$limit" $PY benchmarks/eval_scenes.py --poses gt --iterations "$n" --data "$DATA" --out "$RUNS" \
          --device cuda --json "$OUT/eval_gt_$n.json" 2>&1 | tail -n 6
      done
      collect_runs ;;
    reconstruct)
      step "$limit" $PY -m fvgen reconstruct "$FERN3" --views 3 --out "$RECON_OUT" --device cuda \
        ${PIPELINE_PRESET:+--preset "$PIPELINE_PRESET"}
      cp "$RECON_OUT/run.json" "$OUT/reconstruct_first_run.json"
      step 60 $PY -m fvgen reconstruct "$FERN3" --views 3 --out "$RECON_OUT" --device cuda \
        ${PIPELINE_PRESET:+--preset "$PIPELINE_PRESET"}
      cp "$RECON_OUT/run.json" "$OUT/reconstruct_rerun.json" ;;
    dust3r)
      step "$limit" $PY benchmarks/dust3r_bench.py --out "$OUT/dust3r_bench.json" > "$OUT/dust3r_bench.log" 2>&1
      tail -n 25 "$OUT/dust3r_bench.log" ;;
    ddp-throughput)
      env | grep -E "NCCL_NVLS|MULTICAST|NVSHMEM_DISABLE"
      for n in ${NPROCS:-1 2}; do
        step "$limit" torchrun --standalone --nproc_per_node="$n" -m fvgen train teacher --config embedded \
          --out "/tmp/bench$n" --benchmark 30 --batch-size 8 > "$OUT/bench_$n.log" 2>&1
        tail -n 4 "$OUT/bench_$n.log"
        cp "/tmp/bench$n/log.jsonl" "$OUT/bench_$n.jsonl" 2>/dev/null
      done ;;
    warp-test)
      step "$limit" $PY -m pytest -q -s -p no:cacheprovider ${WARP_TESTS:-tests/render/test_points_render.py} \
        -k "gsplat or renderer" 2>&1 | tail -n 8 ;;
    colmap-test)
      step "$limit" $PY -m pytest -q -p no:cacheprovider tests/priors/test_colmap_mvs.py > "$OUT/colmap_test.log" 2>&1
      tail -n 6 "$OUT/colmap_test.log" ;;
    colmap-mvs)
      local variants=() v
      for v in ${COLMAP_VARIANTS:-}; do variants+=(--variant "$v"); done
      step "$limit" $PY benchmarks/colmap_mvs.py --datasets "$DATA" --device cuda --keep /tmp/colmap_keep \
        --out "$OUT/colmap_mvs.json" "${variants[@]}" ${COLMAP_MVS_ARGS:-} > "$OUT/colmap_mvs.log" 2>&1
      tail -n 25 "$OUT/colmap_mvs.log"
      n=$(grep -l -E "fvgen-colmap-error|Check failed|terminate called" /tmp/colmap_keep/*/*/colmap.log 2>/dev/null | head -1)
      if [ -n "$n" ]; then cp "$n" "$OUT/colmap_failed.log"; tail -n 20 "$n"; fi ;;
    sampling)
      step "$limit" $PY benchmarks/sampling.py --json "$OUT/sampling_gpu.json" --compile ${COMPILE:-reduce-overhead} \
        --budget-s 330 > "$OUT/sampling_gpu.log" 2>&1
      grep -v "^W[0-9]" "$OUT/sampling_gpu.log" | tail -n 12 ;;
    viewcrafter)
      step "$limit" $PY benchmarks/viewcrafter_speed.py --device cuda --json "$OUT/viewcrafter_speed.json" \
        > "$OUT/viewcrafter_speed.log" 2>&1
      tail -n 12 "$OUT/viewcrafter_speed.log" ;;
    *) echo "unknown job $name (see the head of benchmarks/gpu_run.sh)"; return 2 ;;
  esac
}

declare -A LIMITS=([gsplat-warmup]=200 [rasterizer]=150 [fit-speed]=100 [eval]=230 [eval-random]=90
                   [eval-iterations]=200 [eval-variants]=200 [reconstruct]=120 [dust3r]=240 [ddp-throughput]=150 [warp-test]=200
                   [colmap-test]=120 [colmap-mvs]=420 [sampling]=470 [viewcrafter]=300)

if [ -n "${WHEELS:-}" ]; then
  install_wheels $WHEELS || exit 1
fi
if [ -n "${COLMAP_CUDA:-}" ]; then
  install_pycolmap_cuda "$COLMAP_CUDA" || exit 1
fi
machine_info
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  name=${1%%=*}
  limit=${LIMITS[$name]:-}
  [ "$1" != "$name" ] && limit=${1#*=}
  [ -n "$limit" ] || { echo "unknown job $name (see the head of benchmarks/gpu_run.sh)"; exit 2; }
  run_job "$name" "$limit"
  shift
done
if [ "${1:-}" = "--" ]; then
  shift
  step "$@"
fi
ls -la "$OUT"
