"""Layer 1: poses and a dense point cloud from the input photos (pycolmap SfM + multi-view stereo,
or DUSt3R). :func:`.backends.compute_priors` is the one entry; :class:`.prior.Priors` its result."""
