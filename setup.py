"""Package discovery (the metadata is in pyproject.toml): every package under fvgen/ is found
automatically, the presets in the top-level pipelines/ folder ship as ``fvgen.pipelines``, and the
shipped model folders under fvgen/videomodel/weights/ (no Python in them) as data packages."""

from setuptools import find_namespace_packages, find_packages, setup

# the shipped student: safetensors shards of at most 15 MiB, their configs and its model card
weights = find_namespace_packages(include=["fvgen.videomodel.weights", "fvgen.videomodel.weights.*"])

setup(
    packages=find_packages(include=["fvgen", "fvgen.*"]) + weights + ["fvgen.pipelines"],
    package_dir={"fvgen.pipelines": "pipelines"},
    package_data={"fvgen.pipelines": ["*.toml"], "fvgen.videomodel.viewcrafter": ["*.json.gz"],
                  **{p: ["*.json", "*.md", "*.safetensors"] for p in weights}},
)
