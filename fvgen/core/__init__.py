"""Layer 0: what every other layer may use (cameras, images, videos, trajectories, metrics,
point clouds, devices, progress, errors, the config loader, the stage cache, procedural scenes,
the shared datasets). Imports nothing else of fvgen."""
