#!/usr/bin/env bash
# Fourth device call on an H200 (see benchmarks/RESULTS.md): the fit stage of `fvgen reconstruct`
# on fern's 3 views with its priors cached (made on CPU; the priors stage was timed on the H200
# in gpu_call3.sh), and the random-initialisation anchor (gsplat DefaultStrategy, 3000 steps,
# coloured random points in the train frusta) on fern with ground-truth poses.
# Carried: .gpu/whl1/ (gsplat, plyfile, kornia, kornia_rs) and .gpu/run4/.
set -u
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
python3 -c "import gsplat" 2>/dev/null || python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .gpu/whl1/*.whl
export PYTHONPATH=/tmp/site:$PWD
O=${OUT:-/tmp/out}; mkdir -p "$O"
step() { local t=$1; shift; echo "== $* (limit ${t}s)"; local s=$(date +%s); timeout "$t" "$@"; echo "== rc $? in $(( $(date +%s) - s ))s"; }
step 200 python3 -c "
import torch, gsplat; m=torch.randn(10,3,device='cuda'); m[:,2]+=5
gsplat.rasterization(m,torch.randn(10,4,device='cuda'),torch.rand(10,3,device='cuda'),torch.rand(10,device='cuda'),torch.rand(10,3,device='cuda'),torch.eye(4,device='cuda')[None],torch.tensor([[50.,0,32],[0,50,24],[0,0,1]],device='cuda')[None],64,48); print('gsplat ready')"
step 90 python3 -m fvgen reconstruct .gpu/run4/fern3 --views 3 --out .gpu/run4/eval_runs/fern-estimated-default --device cuda
cp .gpu/run4/eval_runs/fern-estimated-default/run.json "$O/reconstruct_fit_stage.json"
step 90 python3 benchmarks/eval_scenes.py --data .gpu/run4/datasets --out .gpu/run4/eval_runs --device cuda --scenes fern --poses gt --init random --json "$O/eval_random_fern.json"
cp .gpu/run4/eval_runs/fern-gt-default-random/compare/image008.png "$O/fern_random_image008.png" 2>/dev/null
ls -la "$O"
