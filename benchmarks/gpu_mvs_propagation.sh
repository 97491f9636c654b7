#!/usr/bin/env bash
# Dense priors on one GPU (issue 17): warp quality at the held-out cameras of the 3-view splits
# for the plane sweep and the sweep + slanted-plane propagation, at the default preset's stereo
# size (480 px, 96 planes) and at the cpu preset's (320 px, 64 planes), torch on CUDA.
# Needs: torch with CUDA (no extra wheels: the harmonic fill is ours) and the three scenes, carried
# as .gpu/eval_scenes (python benchmarks/colmap_mvs.py --pack .gpu/eval_scenes; DATA=DIR for
# another folder of the same layout). Writes $OUT/warp_*.json and prints one table per run.
# Run from the repo root: bash benchmarks/gpu_mvs_propagation.sh
set -u
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=${SITE:-/tmp/site}:$PWD  # kornia (SSIM) as a carried wheel
O=${OUT:-/tmp/out}; mkdir -p "$O"
DATA=${DATA:-.gpu/eval_scenes}
nvidia-smi -L; date -u
for size in ${SIZES:-480:96 320:64}; do  # SIZES: PX:PLANES pairs
  size=${size/:/ }
  set -- $size
  for mode in sweep prop; do
    extra=""; [ $mode = prop ] && extra="--mvs propagation_iters=2 ncc_threshold=0.55"
    echo "== $mode at $1 px, $2 planes"
    python3 benchmarks/warp_quality.py --datasets "$DATA" --device cuda --fill harmonic --max-image-size $1 --planes $2 \
      $extra --out "$O/warp_${mode}_$1.json" 2>&1 | tail -5
  done
done
