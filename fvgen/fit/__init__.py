"""3DGS fitting: Gaussians initialised from the dense prior, optimised against the input views and
generated views (per-image weights, per-pixel confidence masks), optionally refining the input
cameras' poses (:mod:`fvgen.fit.poses`)."""

from .optimize import FitConf, FitViews, fit_gaussians, masked_loss, scene_scale
from .poses import InputPoseRefiner, pose_changes

__all__ = ["FitConf", "FitViews", "InputPoseRefiner", "fit_gaussians", "masked_loss", "pose_changes", "scene_scale"]
