"""fvgen: a few photos in, a 3D Gaussian Splatting scene out (FVGen, arXiv 2508.06392)."""

__version__ = "0.1.0"
