#!/usr/bin/env bash
# Open measurements of the pipeline issue on one H200 (one device call, about 6 minutes):
#   1. the gsplat point-warp renderer against our torch z-buffer (tests/test_points_render.py);
#   2. fit time and held-out quality of the default preset at 3000 and at 2000 iterations on the
#      3-view splits with ground-truth poses (is a cheaper default as good? priors + fit <= 30 s).
# Prepared on the CPU machine (all ignored by git):
#   ../shared/tools/gpu-wheels kornia kornia_rs   -> copy gsplat, plyfile, kornia, kornia_rs,
#       pytest, pluggy, iniconfig, pygments wheels into .gpu/whl_issue2/
#   python benchmarks/eval_scenes.py --poses gt --priors-only --copy-data .gpu/datasets --out .gpu/eval_runs
# Carry: .gpu/whl_issue2 .gpu/datasets .gpu/eval_runs
set -u
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl_issue2/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
O=${OUT:-/tmp/out}; mkdir -p "$O"
nvidia-smi -L; date -u
step() { local t=$1; shift; echo "== $* (limit ${t}s)"; local s=$(date +%s); timeout "$t" "$@"; echo "== rc $? in $(( $(date +%s) - s ))s"; }
# gsplat builds its kernels on first use (about 60 s); the warp agreement test triggers it
step 200 python3 -m pytest -q -s -p no:cacheprovider tests/test_points_render.py -k "gsplat or renderer" 2>&1 | tail -n 8
for it in 2000 3000; do
  step 200 python3 benchmarks/eval_scenes.py --poses gt --iterations "$it" --data .gpu/datasets --out .gpu/eval_runs \
    --device cuda --json "$O/eval_gt_${it}.json" 2>&1 | tail -n 6
done
ls -la "$O"
