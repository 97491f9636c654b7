#!/usr/bin/env bash
# COLMAP PatchMatch stereo (pycolmap-cuda12 4.2.1) against the plane sweep on one GPU (issue 17,
# item 1): installs the CUDA build of pycolmap with its runtime needs into /tmp, runs
# tests/priors/test_colmap_mvs.py (its GPU test runs real PatchMatch) and benchmarks/colmap_mvs.py
# on fern, dtu_scan24 and fox (3-view splits, ground-truth cameras). Run from the repo root.
#
# Carried (ignored folders of the checkout, made by the helper on h/colmap; see SHA256SUMS there):
#   .gpu/whl-colmap/pycolmap_cuda12-4.2.1-cp312-manylinux_2_28.tar.xz  42 MiB: the files of
#       PyPI's pycolmap_cuda12-4.2.1-cp312-cp312-manylinux_2_28_x86_64.whl (73 MB) repacked with
#       xz -9e; its RECORD is checked file by file after unpacking.
#   .gpu/whl-colmap/split/...whl.part0 (55 MiB), .part1 (15 MiB): the wheel itself, split, for
#       the two-call route.
#   .gpu/whl-colmap/deps/: libcudart.so.12 (from nvidia-cuda-runtime-cu12 12.9.79, with that wheel's
#       RECORD; the host's torch brings CUDA 13's libcudart.so.13 only) and Debian bookworm's X11
#       client libraries (libsm6 libice6 libx11-6 libxext6 libxcb1 libxau6 libxdmcp6 libbsd0
#       libmd0), unpacked only when the host lacks libX11/libXext/libSM/libICE.
#   .gpu/eval_scenes/: fern, dtu_scan24, fox cameras + split images (python benchmarks/colmap_mvs.py
#       --pack .gpu/eval_scenes), 12 MiB.
# cuRAND: the extension lists libcurand.so.10 as NEEDED but imports none of its symbols
# (nm -D --undefined-only: no curand*), so the host's own libcurand.so.10 (torch's nvidia-curand
# or /usr/local/cuda) serves; if there is none, an empty library of that soname is built with cc.
#
# Routes:
#   one call:  bash benchmarks/gpu_colmap_mvs.sh run
#              carry .gpu/whl-colmap/pycolmap_cuda12-4.2.1-cp312-manylinux_2_28.tar.xz,
#                    .gpu/whl-colmap/deps, .gpu/whl-colmap/SHA256SUMS, .gpu/eval_scenes  (56 MiB)
#   two calls on one warm machine (the second within 30 s of the first):
#              bash benchmarks/gpu_colmap_mvs.sh stage1   carry .gpu/whl-colmap/split/*.part0,
#                                                         .gpu/whl-colmap/SHA256SUMS
#              bash benchmarks/gpu_colmap_mvs.sh stage2   carry .gpu/whl-colmap/split/*.part1,
#                                                         .gpu/whl-colmap/deps,
#                                                         .gpu/whl-colmap/SHA256SUMS, .gpu/eval_scenes
# Writes to $OUT: colmap_mvs.json, bench.log, tests.log, env.log (+ colmap_failed.log on failure).
set -u
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
W=.gpu/whl-colmap
WHEEL=pycolmap_cuda12-4.2.1-cp312-cp312-manylinux_2_28_x86_64.whl
TARXZ=pycolmap_cuda12-4.2.1-cp312-manylinux_2_28.tar.xz
PARTS=/tmp/colmap_parts
SITE=/tmp/site_colmap
LIBS=/tmp/colmap_libs
O=${OUT:-/tmp/colmap_out}
mkdir -p "$O"

# Check every file of an unpacked wheel in $1 against its RECORD (sha256, urlsafe base64).
verify_record() {
  python3 - "$1" "$2" <<'EOF'
import base64, csv, hashlib, sys
from pathlib import Path
root, dist = Path(sys.argv[1]), sys.argv[2]
rows = list(csv.reader((root / dist / "RECORD").read_text().splitlines()))
bad, n = [], 0
for path, digest, _ in rows:
    if not digest or not (root / path).exists():
        continue
    algo, want = digest.split("=", 1)
    got = base64.urlsafe_b64encode(hashlib.new(algo, (root / path).read_bytes()).digest()).rstrip(b"=").decode()
    n += 1
    if got != want:
        bad.append(path)
print(f"RECORD {dist}: {n} files checked, {len(bad)} differ {bad[:3]}")
sys.exit(1 if bad or n == 0 else 0)
EOF
}

# libcudart.so.12, X11 client libraries when missing, libcurand.so.10; exports LD_LIBRARY_PATH.
install_runtime() {
  mkdir -p $LIBS/cudart
  tar -xJf $W/deps/nvidia_cuda_runtime_cu12-12.9.79-libcudart.tar.xz -C $LIBS/cudart || return 1
  verify_record $LIBS/cudart nvidia_cuda_runtime_cu12-12.9.79.dist-info || return 1
  local paths=$LIBS/cudart/nvidia/cuda_runtime/lib
  local missing=""
  for so in libX11.so.6 libXext.so.6 libSM.so.6 libICE.so.6 libxcb.so.1; do
    ldconfig -p | grep -q "$so " || missing="$missing $so"
  done
  if [ -n "$missing" ]; then
    echo "host lacks:$missing -> unpacking the carried Debian packages"
    mkdir -p $LIBS/x11
    for f in $W/deps/*.deb; do dpkg -x "$f" $LIBS/x11 || return 1; done
    paths="$paths:$LIBS/x11/usr/lib/x86_64-linux-gnu"
  fi
  local curand
  curand=$(python3 - <<'EOF'
import glob, site
hits = []
for sp in site.getsitepackages():
    hits += sorted(glob.glob(f"{sp}/nvidia/**/libcurand.so.10*", recursive=True))
hits += sorted(glob.glob("/usr/local/cuda*/lib64/libcurand.so.10*"))
hits += sorted(glob.glob("/usr/local/cuda*/targets/x86_64-linux/lib/libcurand.so.10*"))
print(hits[0] if hits else "")
EOF
)
  if [ -z "$curand" ]; then
    curand=$(ldconfig -p | awk '/libcurand.so.10 /{print $NF; exit}')
  fi
  if [ -n "$curand" ]; then
    echo "libcurand.so.10 from the host: $curand"
    mkdir -p $LIBS/curand && ln -sf "$curand" $LIBS/curand/libcurand.so.10
  else
    echo "no libcurand.so.10 on this host: an empty stand-in of that soname (no cuRAND symbol is imported)"
    mkdir -p $LIBS/curand && echo "" > $LIBS/curand/empty.c
    cc -shared -Wl,-soname,libcurand.so.10 -o $LIBS/curand/libcurand.so.10 $LIBS/curand/empty.c || return 1
  fi
  paths="$paths:$LIBS/curand"
  export LD_LIBRARY_PATH=$paths${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
}

bench() {
  export PYTHONPATH=$SITE:$PWD
  {
    date -u; nvidia-smi -L; nvidia-smi --query-gpu=driver_version --format=csv,noheader
    ldd --version | head -1; python3 --version
    python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    ldd $SITE/pycolmap/_core*.so | grep -E "not found|cudart|curand|X11|Xext|SM|ICE|xcb"
    python3 -c "import pycolmap; print('pycolmap', pycolmap.__version__, 'has_cuda', pycolmap.has_cuda)"
    python3 -c "from fvgen.colmap_mvs import colmap_available; print('colmap_available', colmap_available())"
  } 2>&1 | tee "$O/env.log"
  echo "== tests/priors/test_colmap_mvs.py"
  timeout 150 python3 -m pytest -q -p no:cacheprovider tests/priors/test_colmap_mvs.py > "$O/tests.log" 2>&1
  echo "pytest rc $?"; tail -5 "$O/tests.log"
  echo "== benchmarks/colmap_mvs.py"
  timeout 420 python3 benchmarks/colmap_mvs.py --datasets .gpu/eval_scenes --device cuda \
    --keep /tmp/colmap_keep --out "$O/colmap_mvs.json" \
    --variant colmap_filter_default=filter_min_num_consistent=2,filter_min_triangulation_angle=3 \
    --variant colmap_window7=window_radius=7 \
    --variant colmap_photometric=geom_consistency=false 2>&1 | tee "$O/bench.log"
  echo "benchmark rc ${PIPESTATUS[0]}"
  local failed
  failed=$(grep -l -E "fvgen-colmap-error|Check failed|terminate called" /tmp/colmap_keep/*/*/colmap.log 2>/dev/null | head -1)
  if [ -n "$failed" ]; then cp "$failed" "$O/colmap_failed.log"; tail -20 "$failed"; fi
}

case "${1:-}" in
  stage1)
    mkdir -p $PARTS && cp $W/split/$WHEEL.part0 $PARTS/ || exit 1
    (cd $W && sha256sum -c --ignore-missing SHA256SUMS) || exit 1
    ls -la $PARTS; df -h /tmp | tail -1
    ;;
  stage2)
    [ -f $PARTS/$WHEEL.part0 ] || { echo "part 0 is not in $PARTS: the machine was given back between the calls; use the one-call route (run)"; exit 1; }
    cat $PARTS/$WHEEL.part0 $W/split/$WHEEL.part1 > /tmp/$WHEEL || exit 1
    want=$(awk -v w="$WHEEL" '$2 == w {print $1}' $W/SHA256SUMS)
    [ "$(sha256sum /tmp/$WHEEL | cut -d' ' -f1)" = "$want" ] || { echo "joined wheel: sha256 differs"; exit 1; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target $SITE /tmp/$WHEEL || exit 1
    install_runtime || exit 1
    bench
    ;;
  run)
    (cd $W && sha256sum -c --ignore-missing SHA256SUMS) || exit 1
    mkdir -p $SITE && tar -xJf $W/$TARXZ -C $SITE || exit 1
    verify_record $SITE pycolmap_cuda12-4.2.1.dist-info || exit 1
    install_runtime || exit 1
    bench
    ;;
  *)
    echo "usage: bash benchmarks/gpu_colmap_mvs.sh run | stage1 | stage2 (see the comments at the top)"; exit 2
    ;;
esac
