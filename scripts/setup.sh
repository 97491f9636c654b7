#!/usr/bin/env bash
# Sets up fvgen in ./.venv on a fresh machine: system library for open3d, the right torch build
# (CPU-only where there is no NVIDIA GPU: a bare `pip install torch` would pull a multi-GB CUDA
# build), then fvgen itself with its test extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ldconfig -p 2>/dev/null | grep -q libusb-1.0; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q libusb-1.0-0 >/dev/null; })
  else
    echo "note: open3d needs libusb-1.0 (Debian/Ubuntu: sudo apt-get install libusb-1.0-0)" >&2
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    python -m pip install -q "torch>=2.4"
  else
    python -m pip install -q "torch==2.13.0"  # the CPU build on this project's machines
  fi
fi
# pycolmap: the CPU build, or with FVGEN_COLMAP=cuda the CUDA 12 build (COLMAP PatchMatch stereo).
# Both install the module `pycolmap`: when the other build is there, uninstalling it deletes the
# shared files, so the wanted build is reinstalled after it.
case "${FVGEN_COLMAP:-cpu}" in
  cpu) extra=cpu; want="pycolmap>=3.11"; other=pycolmap-cuda12 ;;
  cuda) extra=cuda; want="pycolmap-cuda12>=4.2"; other=pycolmap ;;
  *) echo "FVGEN_COLMAP must be cpu or cuda" >&2; exit 2 ;;
esac
python -m pip install -q -e ".[dev,$extra]"
if python -m pip show -q "$other" >/dev/null 2>&1; then
  python -m pip uninstall -q -y "$other"
  python -m pip install -q --force-reinstall --no-deps "$want"
fi
echo "fvgen is installed in .venv ($(python -c 'import torch; print("torch", torch.__version__)'))" >&2
