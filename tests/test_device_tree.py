"""benchmarks/device_tree.sh: the shipped weights leave what a device call sends (git's index and
untracked-not-ignored files) and come back exactly, and no commit can happen in between."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = "fvgen/videomodel/weights"


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=check)


def sent(repo: Path) -> list[str]:
    return git(repo, "ls-files", "-co", "--exclude-standard").stdout.split()


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs git and a checkout")
def test_lean_leaves_the_weights_out_and_restore_brings_them_back(tmp_path):
    repo = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(repo)], check=True)
    script = repo / "benchmarks" / "device_tree.sh"
    shutil.copy(ROOT / "benchmarks" / "device_tree.sh", script)  # this checkout's, committed or not
    git(repo, "config", "user.email", "t@t"), git(repo, "config", "user.name", "t")
    before = sent(repo)
    assert any(p.startswith(WEIGHTS) for p in before)
    run = lambda cmd: subprocess.run(["bash", str(script), cmd], cwd=repo, capture_output=True, text=True)  # noqa: E731

    lean = run("lean")
    assert lean.returncode == 0, lean.stderr
    assert not any(p.startswith(WEIGHTS) for p in sent(repo))
    assert (repo / WEIGHTS / "student" / "fvgen_model.json").is_file()  # still on disk
    refused = git(repo, "commit", "-q", "--allow-empty", "-m", "x", check=False)
    assert refused.returncode != 0 and "restore" in refused.stderr

    restore = run("restore")
    assert restore.returncode == 0, restore.stderr
    assert sent(repo) == before
    assert git(repo, "status", "--porcelain", "--", WEIGHTS).stdout == ""
    assert git(repo, "commit", "-q", "--allow-empty", "-m", "x", check=False).returncode == 0
