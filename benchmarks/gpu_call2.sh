#!/usr/bin/env bash
# Second device call on an H200 (see benchmarks/RESULTS.md): fit speed against a bare gsplat
# loop, `fvgen eval` on the 3-view splits (GT and estimated poses) and the random-init anchor on
# fern. Carried in .gpu/ as for gpu_call1.sh: whl1/, datasets/, eval_runs/ (priors made on CPU).
set -u
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .gpu/whl1/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
O=${OUT:-/tmp/out}; mkdir -p "$O"
nvidia-smi -L; date -u
step() { local t=$1; shift; echo "== $* (limit ${t}s)"; local s=$(date +%s); timeout "$t" "$@"; echo "== rc $? in $(( $(date +%s) - s ))s"; }
step 100 python3 benchmarks/fit_speed.py .gpu/eval_runs/fern-gt-default/priors --iterations 3000 --json "$O/fit_speed.json"
step 230 python3 benchmarks/eval_scenes.py --data .gpu/datasets --out .gpu/eval_runs --device cuda --json "$O/eval_default.json"
step 45 python3 benchmarks/eval_scenes.py --data .gpu/datasets --out .gpu/eval_runs --device cuda --scenes fern --poses gt --init random --json "$O/eval_random_fern.json"
tar czf "$O/eval_runs.tgz" .gpu/eval_runs/*/metrics.json .gpu/eval_runs/*/run.json .gpu/eval_runs/*/compare/*0[0-2]*.png 2>/dev/null
ls -la "$O"
