"""The pipeline's stages, one module each, in the style of hloc: a stage has a config, a cache key
from its inputs, and ``main(...) -> StageResult`` that writes one folder ``OUT/<stage>/`` (see
:mod:`fvgen.core.cache`) and skips the work when that folder is already up to date.

- :mod:`.priors`: images -> cameras + dense point cloud (``OUT/priors/``)
- :mod:`.warp`: priors + trajectory -> point-cloud renders with validity masks (``OUT/warp/<traj>/``)
- :mod:`.fit`: priors (+ generated views) -> 3DGS splats (``OUT/fit/``)
"""
