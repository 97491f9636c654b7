#!/usr/bin/env bash
# COLMAP PatchMatch stereo (pycolmap-cuda12 4.2.1) against the plane sweep on one GPU (issue 17,
# item 1), from the repository root: installs the CUDA build of pycolmap and its runtime
# (install_pycolmap_cuda in gpu_common.sh), then gpu_run.sh's jobs colmap-test (the tests of
# fvgen/priors/colmap_mvs.py, with real PatchMatch) and colmap-mvs (benchmarks/colmap_mvs.py on fern,
# dtu_scan24, fox at their 3-view splits, ground-truth cameras; COLMAP defaults, three variants, sweep).
#
# Carried (ignored, under .gpu/; made on the CPU machine by `bash benchmarks/pack_colmap_cuda.sh`,
# as root, from PyPI and Debian bookworm; it checks them and writes SHA256SUMS):
#   .gpu/whl-colmap/pycolmap_cuda12-4.2.1-cp312-manylinux_2_28.tar.xz  42 MiB: the files of PyPI's
#       pycolmap_cuda12-4.2.1-cp312-cp312-manylinux_2_28_x86_64.whl (73 MB) repacked with xz -9e,
#       checked file by file against the wheel's RECORD after unpacking
#   .gpu/whl-colmap/split/<wheel>.part0 (55 MiB), .part1 (15 MiB): the wheel itself, split -b 55M
#   .gpu/whl-colmap/deps/: libcudart.so.12 of nvidia-cuda-runtime-cu12 12.9.79 with its dist-info
#       (RECORD) as nvidia_cuda_runtime_cu12-12.9.79-libcudart.tar.xz, and the .deb files of
#       Debian bookworm's libsm6 libice6 libx11-6 libxext6 libxcb1 libxau6 libxdmcp6 libbsd0 libmd0
#   .gpu/whl-colmap/SHA256SUMS
#   .gpu/eval_scenes/: python benchmarks/colmap_mvs.py --pack .gpu/eval_scenes (12 MiB; DATA=... for
#       another folder of the same layout, e.g. eval_scenes.py --copy-data's .gpu/datasets)
#
#   The scores need kornia (SSIM), which the host lacks: WHEELS=.gpu/wk (kornia + kornia_rs, 7 MB) with the
#   call that runs colmap-mvs. With it the one call below is over 64 MiB, so (2026-12-07, as run):
#               call 1: true   carry the three .gpu/whl-colmap paths below (they stay on the warm machine)
#               call 2: WHEELS=.gpu/wk bash benchmarks/gpu_colmap_mvs.sh run   carry .gpu/eval_scenes .gpu/wk
#   one call:   bash benchmarks/gpu_colmap_mvs.sh run
#               carry .gpu/whl-colmap/pycolmap_cuda12-4.2.1-cp312-manylinux_2_28.tar.xz
#                     .gpu/whl-colmap/deps .gpu/whl-colmap/SHA256SUMS .gpu/eval_scenes   (~56 MiB)
#   two calls on one machine kept warm (the second within 30 s of the first):
#               bash benchmarks/gpu_colmap_mvs.sh stage1
#               carry .gpu/whl-colmap/split/<wheel>.part0 .gpu/whl-colmap/SHA256SUMS
#               bash benchmarks/gpu_colmap_mvs.sh stage2
#               carry .gpu/whl-colmap/split/<wheel>.part1 .gpu/whl-colmap/deps
#                     .gpu/whl-colmap/SHA256SUMS .gpu/eval_scenes
# Results in $OUT (default /tmp/out): colmap_mvs.json, colmap_mvs.log, colmap_test.log
# (+ colmap_failed.log when a COLMAP run failed). COLMAP_VARIANTS replaces the variants below.
set -u
W=${COLMAP_CUDA:-.gpu/whl-colmap}
export DATA=${DATA:-.gpu/eval_scenes}
export COLMAP_VARIANTS=${COLMAP_VARIANTS:-"filter_default=filter_min_num_consistent=2,filter_min_triangulation_angle=3 window7=window_radius=7 photometric=geom_consistency=false"}
case "${1:-}" in
  stage1)
    mkdir -p /tmp/colmap_parts && cp "$W"/split/*.part0 /tmp/colmap_parts/ || exit 1
    (cd "$W" && sha256sum -c --ignore-missing SHA256SUMS) || exit 1
    ls -la /tmp/colmap_parts
    ;;
  stage2)
    COLMAP_FROM=parts COLMAP_CUDA=$W exec bash benchmarks/gpu_run.sh colmap-test colmap-mvs
    ;;
  run)
    (cd "$W" && sha256sum -c --ignore-missing SHA256SUMS) || exit 1
    COLMAP_CUDA=$W exec bash benchmarks/gpu_run.sh colmap-test colmap-mvs
    ;;
  *)
    echo "usage: bash benchmarks/gpu_colmap_mvs.sh run | stage1 | stage2 (see the comments at the top)"
    exit 2
    ;;
esac
