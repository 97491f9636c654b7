# Shared helpers of the device-machine scripts (benchmarks/gpu_run.sh, benchmarks/gpu_teacher.sh).
# Sourced from the repository root, never run. The device machine has no network: packages it lacks
# come as wheels carried from the CPU machine (../shared/tools/gpu-wheels NAME... copies them).
#
#   PY       the interpreter (default python3; e.g. PY=.venv/bin/python for a dry run on a CPU machine)
#   SITE     where carried wheels are installed (default /tmp/site), put first on PYTHONPATH
#   WHEELS   folders of carried wheels, space-separated (default: none, nothing installed)

PY=${PY:-python3}
SITE=${SITE:-/tmp/site}
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
# gsplat compiles its CUDA kernels on first use (about 60 s); H100 and H200 are both sm_90
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
export PYTHONPATH=$SITE:$PWD

# install_wheels DIR...: every *.whl of the given folders into $SITE, offline, without dependencies
install_wheels() {
  local wheels=() dir
  for dir in "$@"; do
    [ -d "$dir" ] || { echo "install_wheels: no folder $dir" >&2; return 1; }
    wheels+=("$dir"/*.whl)
  done
  [ ${#wheels[@]} -eq 0 ] && return 0
  $PY -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "${wheels[@]}"
}

# step LIMIT_S CMD...: run CMD under a time limit, print it, its exit status and its wall time
step() {
  local limit=$1 start rc cmd
  shift
  cmd="$*"
  echo "== ${cmd%%$'\n'*} (limit ${limit}s)"  # a multi-line python -c: its first line
  start=$(date +%s)
  timeout "$limit" "$@"
  rc=$?
  echo "== rc $rc in $(( $(date +%s) - start ))s"
  return $rc
}

# machine_info: which card (name, memory) and when, for the record of a measurement
machine_info() {
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no NVIDIA GPU"
  date -u
}
