#!/usr/bin/env bash
# Issue 19, one device call on one GPU (H100 or H200), from the repository root: the teacher's
# sampling (50 steps, CFG 3.0) against the 4-step student's, random weights, at the embedded and
# the paper preset (512x320x16), with the student's FLOP floor and torch.compile (reduce-overhead:
# CUDA graphs) measured; under 8 minutes on an H100 (compile runs are skipped past --budget-s).
#   carried: .gpu/wtrain/*.whl (diffusers + importlib_metadata, shared/tools/gpu-wheels), as gpu_teacher.sh
#   result:  $OUT/sampling_gpu.json and sampling_gpu.log -> benchmarks/results/sampling_<card>.json
set -u
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
PY=${PY:-python3}
if ! $PY -c "import diffusers" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/wtrain/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD
O=${OUT:-/tmp/out}; mkdir -p "$O"
nvidia-smi --query-gpu=name,memory.total --format=csv; date -u
timeout 470 $PY benchmarks/sampling.py --json "$O/sampling_gpu.json" --compile ${COMPILE:-reduce-overhead} \
  --budget-s ${BUDGET_S:-330} 2>&1 | grep -v "^W[0-9]" | tee "$O/sampling_gpu.log"
echo "rc ${PIPESTATUS[0]} at $(date -u +%T)"
