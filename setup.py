"""Package discovery (the metadata is in pyproject.toml): every package under fvgen/ is found
automatically, and the presets in the top-level pipelines/ folder ship as ``fvgen.pipelines``."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["fvgen", "fvgen.*"]) + ["fvgen.pipelines"],
    package_dir={"fvgen.pipelines": "pipelines"},
    package_data={"fvgen.pipelines": ["*.toml"], "fvgen.videomodel.viewcrafter": ["*.json.gz"]},
)
