#!/usr/bin/env bash
# Builds the folder that benchmarks/gpu_colmap_mvs.sh carries to the GPU host (default
# .gpu/whl-colmap, ignored by git) from the package registries, on the CPU machine, as root (apt):
#   pycolmap_cuda12-4.2.1-cp312-manylinux_2_28.tar.xz  the files of PyPI's
#       pycolmap_cuda12-4.2.1-cp312-cp312-manylinux_2_28_x86_64.whl, repacked with xz -9e (the
#       wheel's zip deflate leaves 73 MB; xz brings it to ~42 MiB, under the device's carry limit)
#   split/<wheel>.part0, .part1                       the wheel itself, split -b 55M (two calls)
#   deps/nvidia_cuda_runtime_cu12-12.9.79-libcudart.tar.xz  libcudart.so.12 with the dist-info
#       (RECORD, METADATA, WHEEL, licence) of nvidia-cuda-runtime-cu12 12.9.79
#   deps/*.deb                                         Debian bookworm's X11 client libraries
#   SHA256SUMS                                         every file above, relative to the folder, plus
#       the whole wheel by its bare name (install_pycolmap_cuda checks the joined parts against it)
# This is the layout install_pycolmap_cuda (gpu_common.sh) reads. Each repacked file is checked
# against the wheel's RECORD after unpacking the .tar.xz again, the joined parts against the wheel,
# the folder with sha256sum -c; then the sizes of what each gpu_colmap_mvs.sh mode carries.
# Usage (repository root): bash benchmarks/pack_colmap_cuda.sh [DIR]
#   PY      interpreter with pip (default .venv/bin/python, else python3)
#   DATA    the evaluation scenes carried beside it (default .gpu/eval_scenes), only for the sizes
set -euo pipefail
DIR=${1:-.gpu/whl-colmap}
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
DATA=${DATA:-.gpu/eval_scenes}
WHEEL=pycolmap_cuda12-4.2.1-cp312-cp312-manylinux_2_28_x86_64.whl
TARXZ=pycolmap_cuda12-4.2.1-cp312-manylinux_2_28.tar.xz
CUDART_VERSION=12.9.79
CUDART_TARXZ=nvidia_cuda_runtime_cu12-$CUDART_VERSION-libcudart.tar.xz
DEBS="libsm6 libice6 libx11-6 libxext6 libxcb1 libxau6 libxdmcp6 libbsd0 libmd0"
CARRY_LIMIT_MIB=60

[ "$(id -u)" = 0 ] || { echo "run as root (apt-get download)" >&2; exit 1; }
for tool in xz tar split sha256sum apt-get dpkg-deb; do
  command -v $tool >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
grep -q 'VERSION_CODENAME=bookworm' /etc/os-release ||
  { echo "the .deb files must be Debian bookworm's; this host is not bookworm" >&2; exit 1; }

WORK=$(mktemp -d /tmp/pack_colmap.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
rm -rf "$DIR"
mkdir -p "$DIR/split" "$DIR/deps"
DIR=$(cd "$DIR" && pwd)

# unpack_wheel WHEEL DEST: the wheel's files with their zip modes (the .so files stay executable)
unpack_wheel() {
  "$PY" - "$1" "$2" <<'PYEOF'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zf:
    for info in zf.infolist():
        path = zf.extract(info, sys.argv[2])
        mode = (info.external_attr >> 16) & 0o777
        if not info.is_dir():
            os.chmod(path, mode or 0o644)
PYEOF
}

# check_record ROOT DIST_INFO [ONLY...]: every RECORD entry with a digest (or only those named) is
# present under ROOT with that sha256, and ROOT holds no file the RECORD does not list; stricter than
# gpu_common.sh's verify_record, which skips absent files.
check_record() {
  "$PY" - "$@" <<'PYEOF'
import base64, csv, hashlib, sys
from pathlib import Path
root, dist, only = Path(sys.argv[1]), sys.argv[2], set(sys.argv[3:])
rows = list(csv.reader((root / dist / "RECORD").read_text().splitlines()))
listed = {path for path, _, _ in rows}
wanted = [(p, d) for p, d, _ in rows if d and (not only or p in only)]
bad = []
for path, digest in wanted:
    algo, want = digest.split("=", 1)
    f = root / path
    got = (base64.urlsafe_b64encode(hashlib.new(algo, f.read_bytes()).digest()).rstrip(b"=").decode()
           if f.is_file() else "absent")
    if got != want:
        bad.append(f"{path}: {got}")
extra = sorted(str(p.relative_to(root)) for p in root.rglob("*")
               if p.is_file() and str(p.relative_to(root)) not in listed)
print(f"  RECORD {dist}: {len(wanted)} files checked, {len(bad)} differ, {len(extra)} not listed")
for line in bad[:5] + extra[:5]:
    print("   ", line)
sys.exit(1 if bad or extra or not wanted else 0)
PYEOF
}

# deterministic tar.xz of ROOT's PATHS (-9e: the smallest; one thread on the shared CPU machine)
pack_xz() {
  local out=$1 root=$2; shift 2
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf - "$@" |
    xz -9e -T1 -c > "$out"
}

pip_download() {
  # --platform names each manylinux tag: pip does not widen manylinux_2_28 to the older ones
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$WORK/dl" "$1" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
}

echo "== PyPI: pycolmap-cuda12 4.2.1, nvidia-cuda-runtime-cu12 $CUDART_VERSION"
pip_download pycolmap-cuda12==4.2.1
pip_download nvidia-cuda-runtime-cu12==$CUDART_VERSION
[ -f "$WORK/dl/$WHEEL" ] || { echo "download failed: $WHEEL" >&2; exit 1; }
cudart_whl=$(ls "$WORK"/dl/nvidia_cuda_runtime_cu12-$CUDART_VERSION-*.whl 2>/dev/null | head -1)
[ -n "$cudart_whl" ] || { echo "download failed: nvidia-cuda-runtime-cu12 $CUDART_VERSION" >&2; exit 1; }

echo "== $TARXZ (xz -9e, one thread: a few minutes)"
unpack_wheel "$WORK/dl/$WHEEL" "$WORK/site"
check_record "$WORK/site" pycolmap_cuda12-4.2.1.dist-info
# top-level entries only: install_pycolmap_cuda unpacks this straight into its site-packages
pack_xz "$DIR/$TARXZ" "$WORK/site" $(cd "$WORK/site" && ls -A)
mkdir "$WORK/check"
tar -xJf "$DIR/$TARXZ" -C "$WORK/check"
echo "  unpacked again:"
check_record "$WORK/check" pycolmap_cuda12-4.2.1.dist-info

echo "== split/$WHEEL.part0, .part1 (split -b 55M)"
split -b 55M -d -a 1 "$WORK/dl/$WHEEL" "$DIR/split/$WHEEL.part"
[ "$(ls "$DIR/split")" = "$(printf '%s\n' "$WHEEL.part0" "$WHEEL.part1")" ] ||
  { echo "split did not give exactly two parts: $(ls "$DIR/split")" >&2; exit 1; }
cmp <(cat "$DIR/split/$WHEEL.part0" "$DIR/split/$WHEEL.part1") "$WORK/dl/$WHEEL"
echo "  joined parts = the wheel"

echo "== deps/$CUDART_TARXZ"
unpack_wheel "$cudart_whl" "$WORK/cudart_all"
dist=nvidia_cuda_runtime_cu12-$CUDART_VERSION.dist-info
check_record "$WORK/cudart_all" $dist nvidia/cuda_runtime/lib/libcudart.so.12
# the runtime library and the dist-info only (headers and static libraries are no use at run time)
mkdir -p "$WORK/cudart/nvidia/cuda_runtime/lib"
cp -p "$WORK/cudart_all/nvidia/cuda_runtime/lib/libcudart.so.12" "$WORK/cudart/nvidia/cuda_runtime/lib/"
cp -rp "$WORK/cudart_all/$dist" "$WORK/cudart/"
pack_xz "$DIR/deps/$CUDART_TARXZ" "$WORK/cudart" nvidia $dist
mkdir "$WORK/cudart_check"
tar -xJf "$DIR/deps/$CUDART_TARXZ" -C "$WORK/cudart_check"
echo "  unpacked again, each file of the subset:"
check_record "$WORK/cudart_check" $dist $(cd "$WORK/cudart" && find . -type f ! -name RECORD | sed 's|^\./||' | sort)

echo "== deps/*.deb: $DEBS"
# apt-get download checks each file against the signed package lists (as root: its _apt user
# cannot write into root's folders)
if ! (cd "$DIR/deps" && apt-get download -q -o APT::Sandbox::User=root $DEBS); then
  apt-get update -q
  (cd "$DIR/deps" && apt-get download -q -o APT::Sandbox::User=root $DEBS)
fi
mkdir "$WORK/x11"
for f in "$DIR"/deps/*.deb; do dpkg-deb -x "$f" "$WORK/x11"; done
for so in libSM.so.6 libICE.so.6 libX11.so.6 libXext.so.6 libxcb.so.1 libXau.so.6 libXdmcp.so.6 \
          libbsd.so.0 libmd.so.0; do
  [ -e "$WORK/x11/usr/lib/x86_64-linux-gnu/$so" ] || { echo "no $so in the .deb files" >&2; exit 1; }
done
echo "  the 9 packages hold the 9 sonames"

echo "== SHA256SUMS"
(cd "$DIR" && sha256sum "$TARXZ" split/* deps/* > SHA256SUMS)
(cd "$WORK/dl" && sha256sum "$WHEEL") >> "$DIR/SHA256SUMS"
(cd "$DIR" && sha256sum -c --quiet --ignore-missing SHA256SUMS) || { echo "sha256sum -c failed" >&2; exit 1; }
echo "  sha256sum -c: OK"
want=$(awk -v w="$WHEEL" '$2 == w {print $1}' "$DIR/SHA256SUMS")
[ "$(cat "$DIR"/split/$WHEEL.part* | sha256sum | cut -d' ' -f1)" = "$want" ] ||
  { echo "joined parts: sha256 differs from the wheel's line" >&2; exit 1; }
echo "  joined parts against SHA256SUMS: OK"

echo "== sizes"
(cd "$DIR" && du -b "$TARXZ" split/* deps/* SHA256SUMS | awk '{printf "  %7.2f MiB  %s\n", $1 / 2^20, $2}')
mib() { du -cb "$@" 2>/dev/null | tail -1 | awk '{printf "%.2f", $1 / 2^20}'; }
data_note=""
if [ -d "$DATA" ]; then data=("$DATA"); else data=(); data_note=" (without $DATA: not there yet)"; fi
run=$(mib "$DIR/$TARXZ" "$DIR/deps" "$DIR/SHA256SUMS" "${data[@]}")
stage1=$(mib "$DIR/split/$WHEEL.part0" "$DIR/SHA256SUMS")
stage2=$(mib "$DIR/split/$WHEEL.part1" "$DIR/deps" "$DIR/SHA256SUMS" "${data[@]}")
echo "  carried by gpu_colmap_mvs.sh run: $run MiB$data_note; stage1: $stage1 MiB; stage2: $stage2 MiB"
awk -v r="$run" -v lim=$CARRY_LIMIT_MIB 'BEGIN {exit !(r < lim)}' ||
  { echo "run carries $run MiB, over $CARRY_LIMIT_MIB MiB" >&2; exit 1; }
echo "done: $DIR"
