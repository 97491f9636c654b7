#!/usr/bin/env bash
# One device call on an H200 (see benchmarks/RESULTS.md): rasterizer check against gsplat, fit
# speed against a bare gsplat loop, and `fvgen eval` on the 3-view splits with GT and estimated
# poses. Expects, carried in .gpu/: whl1/ (gsplat, plyfile, kornia, kornia_rs wheels), datasets/
# (the split images and pose files, from eval_scenes.py --copy-data) and eval_runs/ (their priors,
# from eval_scenes.py --priors-only: the SfM/MVS stage runs on CPU hosts too).
set -u
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl1/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
O=${OUT:-/tmp/out}; mkdir -p "$O"
nvidia-smi -L; date -u
step() { local t=$1; shift; echo "== $* (limit ${t}s)"; local s=$(date +%s); timeout "$t" "$@"; echo "== rc $? in $(( $(date +%s) - s ))s"; }
step 200 python3 -c "
import torch, gsplat, time; t=time.time()
m=torch.randn(100,3,device='cuda'); m[:,2]+=5
q=torch.randn(100,4,device='cuda'); s=torch.rand(100,3,device='cuda')*.1; o=torch.rand(100,device='cuda'); c=torch.rand(100,3,device='cuda')
K=torch.tensor([[50.,0,32],[0,50,24],[0,0,1]],device='cuda')[None]
gsplat.rasterization(m,q,s,o,c,torch.eye(4,device='cuda')[None],K,64,48); torch.cuda.synchronize(); print('gsplat kernels ready', round(time.time()-t,1),'s')"
step 150 python3 benchmarks/rasterizer_check.py "$O/rasterizer_check.json" --no-cpu --repeats 3 > "$O/rasterizer_check.log" 2>&1; tail -5 "$O/rasterizer_check.log"
step 100 python3 benchmarks/fit_speed.py .gpu/eval_runs/fern-gt-default/priors --iterations 3000 --json "$O/fit_speed.json"
step 220 python3 benchmarks/eval_scenes.py --data .gpu/datasets --out .gpu/eval_runs --device cuda --json "$O/eval_default.json"
step 60 python3 benchmarks/eval_scenes.py --data .gpu/datasets --out .gpu/eval_runs --device cuda --scenes fern --poses gt --init random --json "$O/eval_random_fern.json"
tar czf "$O/eval_runs.tgz" .gpu/eval_runs/*/metrics.json .gpu/eval_runs/*/run.json .gpu/eval_runs/fern-*/compare .gpu/eval_runs/fox-gt-default/compare 2>/dev/null
ls -la "$O"
