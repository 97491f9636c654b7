"""fvgen: a few photos in, a 3D Gaussian Splatting scene out (FVGen, arXiv 2508.06392)."""

import os

# Idle OpenMP threads sleep instead of spinning: on a shared or busy CPU, spinning threads made our
# CPU rasterizer 10-30x slower. Set here, before any fvgen module imports torch, so the CLI, the
# benchmarks and library users all get it (a value the user set is kept).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
