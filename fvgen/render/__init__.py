"""Rendering back-ends (Gaussian rasterization, point rendering)."""
