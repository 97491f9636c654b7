"""The wheel built from the repository holds every subpackage and the presets: installed into a
fresh virtual environment (its dependencies borrowed from this one), ``fvgen generate`` runs
from it. A hand-kept package list once left the video model out of the wheel."""

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp / "dist"), str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp / "dist").glob("fvgen-*.whl"))
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    # the dependencies come from the environment running the tests (a plain path: its own .pth files,
    # such as the editable fvgen's, are not processed, so the wheel's fvgen is the one imported)
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir, wheel


def run(env_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(env_dir / "bin" / "python"), *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=600)


def test_wheel_holds_every_subpackage(installed):
    import zipfile

    _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {str(p.relative_to(ROOT)) for p in (ROOT / "fvgen").rglob("*.py")}
    assert expected <= names, sorted(expected - names)
    assert {f"fvgen/pipelines/{p.name}" for p in (ROOT / "pipelines").glob("*.toml")} <= names
    # the shipped student: every shard, config and its model card
    shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "fvgen" / "videomodel" / "weights").rglob("*") if p.is_file()}
    assert any(n.endswith(".safetensors") for n in shipped) and shipped <= names, sorted(shipped - names)


def test_installed_wheel_generates(installed, tmp_path):
    env_dir, _ = installed
    where = run(env_dir, "-c", "import fvgen; print(fvgen.__file__)", cwd=tmp_path)
    assert str(env_dir) in where.stdout, where.stdout + where.stderr
    help_ = run(env_dir, "-m", "fvgen", "generate", "--help", cwd=tmp_path)
    assert help_.returncode == 0 and "--model" in help_.stdout, help_.stderr
    presets = run(env_dir, "-m", "fvgen", "presets", cwd=tmp_path)
    assert presets.returncode == 0 and str(env_dir) in presets.stdout and "cpu" in presets.stdout
    # a tiny model (random weights, marked as such) and a tiny prior, then `fvgen generate` end to end
    setup = run(env_dir, "-c", """
import numpy as np, json
from pathlib import Path
from fvgen.core.cameras import Camera, look_at
from fvgen.core.images import save_image
from fvgen.core.pointcloud import PointCloud
from fvgen.priors.prior import Priors
from fvgen.videomodel.model import TeacherModel
TeacherModel.random("tiny-pixel").save_pretrained(Path("model"), info={"trained": False, "allow_untrained": True})
rng = np.random.default_rng(0)
K = [[60, 0, 39.5], [0, 60, 29.5], [0, 0, 1]]
cams = [Camera(K, look_at(np.array([x, 0.0, -3.0]), np.zeros(3), np.array([0.0, -1.0, 0.0])), 80, 60,
               name=f"v{i}.png") for i, x in enumerate((-0.5, 0.0, 0.5))]
Priors(cams, PointCloud(rng.uniform(-1, 1, (3000, 3)), rng.random((3000, 3)))).save(Path("out/priors"))
for c in cams:
    save_image(Path("out/priors/images") / c.name, rng.random((60, 80, 3)))
Path("out/priors/stage.json").write_text(json.dumps({"key": "test", "figures": {}}))
""", cwd=tmp_path)
    assert setup.returncode == 0, setup.stderr
    gen = run(env_dir, "-m", "fvgen", "generate", "--out", "out", "--model", "model", "--traj", "interp",
              "--frames", "4", "--steps", "1", "--device", "cpu", "--preset", "cpu", cwd=tmp_path)
    assert gen.returncode == 0, gen.stderr
    assert len(list((tmp_path / "out" / "generate" / "interp" / "rgb").glob("*.png"))) == 4
    assert json.loads((tmp_path / "out" / "run.json").read_text())["stages"][-1]["stage"] == "generate/interp"
