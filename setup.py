"""Package discovery (the metadata is in pyproject.toml): every package under fvgen/ is found
automatically, and the presets in the top-level pipelines/ folder ship as ``fvgen.pipelines``."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["fvgen", "fvgen.*"]) + ["fvgen.pipelines"],
    package_dir={"fvgen.pipelines": "pipelines"},
    # the shipped student (safetensors shards of at most 15 MiB, their configs and model card)
    package_data={"fvgen.pipelines": ["*.toml"], "fvgen.videomodel.viewcrafter": ["*.json.gz"],
                  "fvgen.videomodel": ["weights/*/*.json", "weights/*/*.md", "weights/*/*/*.json",
                                       "weights/*/*/*.safetensors"]},
)
