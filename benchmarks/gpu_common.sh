# Shared helpers of the device-machine scripts (benchmarks/gpu_run.sh, benchmarks/gpu_teacher.sh,
# benchmarks/gpu_distill.sh, benchmarks/gpu_colmap_mvs.sh).
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

# install_pycolmap_cuda DIR: pycolmap-cuda12 4.2.1 (cp312) and its runtime from DIR (the helper's
# .gpu/whl-colmap, see benchmarks/gpu_colmap_mvs.sh) into $SITE; exports LD_LIBRARY_PATH. From
# DIR/pycolmap_cuda12-*.tar.xz (the wheel's files, xz -9e: 42 MiB, each file checked against the
# wheel's RECORD), else from the split wheel: part0 stashed in /tmp/colmap_parts by an earlier call
# (gpu_colmap_mvs.sh stage1), part1 carried in DIR/split (checked against DIR/SHA256SUMS); with
# COLMAP_FROM=parts, from the parts even where the .tar.xz is there. Then
# libcudart.so.12 (DIR/deps; the host's torch brings CUDA 13's only), the X11 client libraries from
# DIR/deps/*.deb when the host lacks them, and the host's libcurand.so.10 (the extension lists it but
# imports none of its symbols; an empty stand-in of that soname is built when the host has none).
install_pycolmap_cuda() {
  local dir=$1 wheel=pycolmap_cuda12-4.2.1-cp312-cp312-manylinux_2_28_x86_64.whl libs=/tmp/colmap_libs
  local tarxz paths missing so curand want
  tarxz=$(ls "$dir"/pycolmap_cuda12-*.tar.xz 2>/dev/null | head -1)
  if [ -n "$tarxz" ] && [ "${COLMAP_FROM:-auto}" != parts ]; then
    mkdir -p "$SITE" && tar -xJf "$tarxz" -C "$SITE" || return 1
    verify_record "$SITE" pycolmap_cuda12-4.2.1.dist-info || return 1
  elif [ -f /tmp/colmap_parts/$wheel.part0 ] && [ -f "$dir/split/$wheel.part1" ]; then
    cat /tmp/colmap_parts/$wheel.part0 "$dir/split/$wheel.part1" > /tmp/$wheel || return 1
    want=$(awk -v w="$wheel" '$2 == w {print $1}' "$dir/SHA256SUMS")
    [ "$(sha256sum /tmp/$wheel | cut -d' ' -f1)" = "$want" ] || { echo "joined wheel: sha256 differs" >&2; return 1; }
    $PY -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" /tmp/$wheel || return 1
  else
    echo "install_pycolmap_cuda: neither $dir/pycolmap_cuda12-*.tar.xz nor the two wheel parts" \
      "(/tmp/colmap_parts/*.part0 from a call on this same machine, $dir/split/*.part1)" >&2
    return 1
  fi
  mkdir -p $libs/cudart $libs/curand
  tar -xJf "$dir"/deps/nvidia_cuda_runtime_cu12-*-libcudart.tar.xz -C $libs/cudart || return 1
  verify_record $libs/cudart nvidia_cuda_runtime_cu12-12.9.79.dist-info || return 1
  paths=$libs/cudart/nvidia/cuda_runtime/lib
  missing=""
  for so in libX11.so.6 libXext.so.6 libSM.so.6 libICE.so.6 libxcb.so.1; do
    ldconfig -p | grep -q "$so " || missing="$missing $so"
  done
  if [ -n "$missing" ]; then
    echo "host lacks:$missing -> the carried Debian packages"
    mkdir -p $libs/x11
    for f in "$dir"/deps/*.deb; do dpkg -x "$f" $libs/x11 || return 1; done
    paths="$paths:$libs/x11/usr/lib/x86_64-linux-gnu"
  fi
  curand=$($PY - <<'PYEOF'
import glob, site
hits = []
for sp in site.getsitepackages():
    hits += sorted(glob.glob(f"{sp}/nvidia/**/libcurand.so.10*", recursive=True))
hits += sorted(glob.glob("/usr/local/cuda*/lib64/libcurand.so.10*"))
hits += sorted(glob.glob("/usr/local/cuda*/targets/x86_64-linux/lib/libcurand.so.10*"))
print(hits[0] if hits else "")
PYEOF
)
  [ -n "$curand" ] || curand=$(ldconfig -p | awk '/libcurand.so.10 /{print $NF; exit}')
  if [ -n "$curand" ]; then
    echo "libcurand.so.10 from the host: $curand"
    ln -sf "$curand" $libs/curand/libcurand.so.10
  else
    echo "no libcurand.so.10 on this host: an empty stand-in of that soname (no cuRAND symbol is imported)"
    echo "" > $libs/curand/empty.c
    cc -shared -Wl,-soname,libcurand.so.10 -o $libs/curand/libcurand.so.10 $libs/curand/empty.c || return 1
  fi
  export LD_LIBRARY_PATH=$paths:$libs/curand${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  ldd "$SITE"/pycolmap/_core*.so | grep -E "not found|cudart|curand|X11"
  $PY -c "import pycolmap; print('pycolmap', pycolmap.__version__, 'has_cuda', pycolmap.has_cuda)"
}

# verify_record DIR DIST_INFO: every file of an unpacked wheel against its RECORD (sha256)
verify_record() {
  $PY - "$1" "$2" <<'PYEOF'
import base64, csv, hashlib, sys
from pathlib import Path
root, dist = Path(sys.argv[1]), sys.argv[2]
bad, n = [], 0
for path, digest, _ in csv.reader((root / dist / "RECORD").read_text().splitlines()):
    if not digest or not (root / path).exists():
        continue
    algo, want = digest.split("=", 1)
    got = base64.urlsafe_b64encode(hashlib.new(algo, (root / path).read_bytes()).digest()).rstrip(b"=").decode()
    n += 1
    bad += [path] if got != want else []
print(f"RECORD {dist}: {n} files checked, {len(bad)} differ {bad[:3]}")
sys.exit(1 if bad or n == 0 else 0)
PYEOF
}

# ----------------------------------------------------------------------------- training across calls
# gpu_teacher.sh and gpu_distill.sh: examples built on the host, a setsid loop of resumable chunks
# (it outlives the call that starts it while the machine stays warm), watched and stopped by later calls.
# They read ROOT, DEVICE, PRESET and OUT (the device tool's folder of files that come back).

# build_examples DATA: the training examples into DATA/built (unless it exists) from the carried scenes (.gpu/train_scenes)
# and, when carried, photo sets (.gpu/photos; PHOTO_SHARE of the examples, default 0.3, are warp-back
# photo examples). Real scenes (PER_SCENE dense priors each, default 8) and procedural rooms
# (PROCEDURAL, default 60: teacher run 2 memorised its 709 clips; procedural warps are the trustworthy
# ones), 3 clips per prior; MIN_WARP_PSNR drops clips whose warp fits the real frames worse (real-scene
# warps: 14 dB on average, see docs/experiments/teacher.md). WORKERS processes (default 12), SEED.
build_examples() {
  local data=$1 t0 photos=()
  if [ -d "$data/built" ]; then  # another run's on this machine (TAG, a distillation after the teacher)
    echo "examples already built: $(ls "$data"/built/*.npz | wc -l) in $data/built"
    return 0
  fi
  t0=$(date +%s)
  if [ -d .gpu/photos ] && [ "${PHOTO_SHARE:-0.3}" != 0 ]; then
    photos=(--photo-share "${PHOTO_SHARE:-0.3}" $(printf -- '--photo-sets %s ' .gpu/photos/*/))
  fi
  OMP_NUM_THREADS=1 $PY -m fvgen data build --out "$data/built" $(printf -- '--scenes %s ' .gpu/train_scenes/*/) \
    --per-scene "${PER_SCENE:-8}" --procedural "${PROCEDURAL:-60}" --clips-per-prior 3 --no-triangulate \
    --device "$DEVICE" --workers "${WORKERS:-12}" --max-size 320 --seed "${SEED:-1}" --preset "$PRESET" \
    --min-warp-psnr "${MIN_WARP_PSNR:-0}" "${photos[@]}" \
    2>&1 | grep -v "^W2" | tail -n 3
  echo "examples built in $(( $(date +%s) - t0 )) s: $(ls "$data"/built/*.npz | wc -l)"
}

# start_loop NAME SCRIPT LOG: `bash SCRIPT loop` as a setsid daemon whose process is named NAME
# (what watch_loop and stop_loop look for), its output in LOG
start_loop() {
  setsid nohup bash -c "exec -a $1 bash $2 loop" > "$3" 2>&1 < /dev/null &
}

# chunk_loop STOP CHUNKS_LOG CMD...: CMD (one resumable training chunk, `fvgen train ...`, whose last
# line is its JSON summary) again and again until a summary says "done" or the file STOP exists; each
# summary appended to CHUNKS_LOG. A crash resumes from the last checkpoint.
chunk_loop() {
  local stop=$1 chunks=$2
  shift 2
  while [ ! -f "$stop" ]; do
    "$@" | tail -n 1 | tee -a "$chunks"
    grep -q '"status": "done"' "$chunks" && break
    sleep 1
  done
  echo "loop ended"
}

# watch_loop WAIT_S NAME LOOP_LOGS RUN...: every 30 s for WAIT_S s, the last line of each RUN/log.jsonl;
# stops early, with the loops' logs (LOOP_LOGS: a path or a glob), when no loop whose command line
# holds NAME runs any more
watch_loop() {
  local end=$(( $(date +%s) + $1 )) name=$2 logs=$3 run
  shift 3
  while [ "$(date +%s)" -lt "$end" ]; do
    sleep 30
    echo "--- $(date +%T)"
    for run in "$@"; do
      [ -f "$run/log.jsonl" ] && echo "$(basename "$run"): $(tail -n 1 "$run/log.jsonl" | cut -c1-220)"
    done
    pgrep -f "$name" > /dev/null || { echo "loop not running"; tail -n 20 $logs; break; }
  done
}

# stop_loop NAME LOOP_LOGS STOP...: ask the loops to stop (touch each STOP file: a chunk checkpoints
# and exports at its next step), wait until none whose command line holds NAME runs, show the end of
# their logs (LOOP_LOGS: a path or a glob)
stop_loop() {
  local name=$1 logs=$2
  shift 2
  touch "$@"
  while pgrep -f "$name" > /dev/null; do sleep 2; done
  tail -n 3 $logs
}

# snapshot_model RUN: a copy of RUN/model (the latest export) to $OUT as model.tar.part-* (15 MiB
# parts; back here: cat model.tar.part-* | tar -x), when $OUT is set and the model exists
snapshot_model() {
  if [ -n "${OUT:-}" ] && [ -d "$1/model" ]; then
    tar -C "$1" -cf - model | split -b 15M - "$OUT/model.tar.part-"; ls -la "$OUT"
  fi
}

# score_generated CLIPS GEN_ROOT RESULTS LOG_DIR: every GEN_ROOT/*/ (teacher_eval.py run outputs)
# scored against CLIPS here, one process each (about 80 s of one core), into
# RESULTS/teacher_eval_<name>.json, so that only the figures need come back (PSNR / SSIM, all and
# hole pixels, per scene; the baselines, the same for every model, are scored once on the CPU
# machine: score without --generated)
score_generated() {
  local clips=$1 results=$3 logs=() gen name
  for gen in "$2"/*/; do
    name=$(basename "$gen")
    logs+=("$4/score_$name.log")
    $PY benchmarks/teacher_eval.py score --clips "$clips" --generated "$gen" --baselines "" \
      --json "$results/teacher_eval_$name.json" > "$4/score_$name.log" 2>&1 &
  done
  wait
  [ ${#logs[@]} -gt 0 ] && tail -n 2 "${logs[@]}"
}
