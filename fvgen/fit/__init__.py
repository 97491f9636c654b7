"""3DGS fitting: Gaussians initialised from the dense prior, optimised against the input views and
generated views (per-image weights, per-pixel confidence masks)."""

from .optimize import FitConf, FitViews, fit_gaussians, masked_loss, scene_scale

__all__ = ["FitConf", "FitViews", "fit_gaussians", "masked_loss", "scene_scale"]
