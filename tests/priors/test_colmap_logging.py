"""COLMAP's own log lines stay off stderr unless --verbose: measured on the mapper failing on two
views that share no matches (glog writes from C++ straight to file descriptor 2)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

pycolmap = pytest.importorskip("pycolmap")


@pytest.mark.parametrize("verbose", [False, True])
def test_mapper_failure_is_silent_unless_verbose(tmp_path, verbose):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):  # noise: features, but no two-view geometry, so the mapper makes no model
        arr = (np.random.default_rng(i).random((120, 160, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(images / f"{i}.png")
    code = textwrap.dedent(f"""
        import pycolmap
        from fvgen.priors.sfm import colmap_logging
        db, out = {str(tmp_path / "db.db")!r}, {str(tmp_path / "out")!r}
        import os; os.makedirs(out)
        with colmap_logging(pycolmap, {verbose}):
            pycolmap.extract_features(db, {str(images)!r})
            pycolmap.match_exhaustive(db)
            recs = pycolmap.incremental_mapping(db, {str(images)!r}, out)
        print("models", len(recs))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0 and res.stdout.strip() == "models 0", res.stderr
    if verbose:
        assert "Failed to create any sparse model" in res.stderr
    else:
        assert res.stderr == ""
