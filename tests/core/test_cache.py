import json
import os
import subprocess
import sys
import textwrap

import pytest

from fvgen.core.cache import cache_key, clean_stale, read_stage, run_lock, run_stage, write_run_json
from fvgen.core.errors import FvgenError


def test_key_changes_with_conf_and_upstream():
    a = cache_key("s", "1", {"x": 1}, "up1")
    assert a == cache_key("s", "1", {"x": 1}, "up1")
    assert a != cache_key("s", "1", {"x": 2}, "up1")
    assert a != cache_key("s", "1", {"x": 1}, "up2")
    assert a != cache_key("s", "2", {"x": 1}, "up1")


def test_run_stage_computes_then_reuses(tmp_path):
    calls = []

    def compute(tmp):
        calls.append(tmp)
        (tmp / "out.txt").write_text("hello")
        return {"n": 1}

    r1 = run_stage(tmp_path, "stage", "k1", compute)
    assert r1.status == "computed" and (tmp_path / "stage" / "out.txt").read_text() == "hello"
    r2 = run_stage(tmp_path, "stage", "k1", compute)
    assert r2.status == "cached" and r2.figures == {"n": 1} and len(calls) == 1
    r3 = run_stage(tmp_path, "stage", "k2", compute)
    assert r3.status == "computed" and len(calls) == 2
    r4 = run_stage(tmp_path, "stage", "k2", compute, force=True)
    assert r4.status == "computed" and len(calls) == 3
    assert r4.key == r3.key and r4.token != r3.token  # later stages see the recomputation
    assert run_stage(tmp_path, "stage", "k2", compute).token == r4.token
    assert read_stage(tmp_path / "stage")["key"] == "k2"


def test_failed_stage_leaves_previous_result(tmp_path):
    run_stage(tmp_path, "stage", "k1", lambda t: (t / "a").write_text("old") and {})

    def boom(tmp):
        (tmp / "a").write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        run_stage(tmp_path, "stage", "k2", boom)
    assert (tmp_path / "stage" / "a").read_text() == "old"
    assert read_stage(tmp_path / "stage")["key"] == "k1"
    assert not list(tmp_path.glob(".stage.tmp-*"))


def test_nested_stage_names_and_stale_cleanup(tmp_path):
    r = run_stage(tmp_path, "warp/orbit", "k", lambda t: {})
    assert r.path == tmp_path / "warp" / "orbit" and read_stage(r.path)["key"] == "k"
    stale = tmp_path / "warp" / ".spiral.tmp-deadbeef"
    stale.mkdir()
    clean_stale(tmp_path)
    assert not stale.exists()


def test_lock_refuses_second_run(tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        from fvgen.core.cache import run_lock
        with run_lock({str(tmp_path)!r}):
            print("locked", flush=True)
            time.sleep(30)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(FvgenError, match="in use by another fvgen run"):
            with run_lock(tmp_path):
                pass
    finally:
        p.kill()
        p.wait()
    assert (tmp_path / ".lock").exists()  # a killed holder (SIGKILL) leaves its lock file...
    with run_lock(tmp_path):  # ...but the kernel freed its flock: the next run takes the folder over
        pass
    assert not (tmp_path / ".lock").exists()


def test_lock_is_removed_after_success_and_error(tmp_path):
    out = tmp_path / "kept"
    out.mkdir()
    with run_lock(out):
        assert (out / ".lock").read_text() == f"pid {os.getpid()}"
        (out / "result.txt").write_text("x")
    assert sorted(os.listdir(out)) == ["result.txt"]
    with pytest.raises(FvgenError):
        with run_lock(out):
            raise FvgenError("a user error")
    assert sorted(os.listdir(out)) == ["result.txt"]


def test_output_folder_created_by_a_failed_run_is_removed(tmp_path):
    out = tmp_path / "new" / "out"
    with pytest.raises(FvgenError):
        with run_lock(out):
            raise FvgenError("views did not register")
    assert not out.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(FvgenError):
        with run_lock(existing):
            raise FvgenError("views did not register")
    assert existing.is_dir() and not os.listdir(existing)  # not ours to remove
    with run_lock(out):  # a created folder that the run filled stays
        (out / "scene.ply").write_text("x")
    assert os.listdir(out) == ["scene.ply"]


def test_lock_removed_under_a_waiting_opener_is_not_shared(tmp_path, monkeypatch):
    """A run that opened .lock just before its holder removed it must not run beside the next one."""
    import fcntl

    import fvgen.core.cache as cache

    real_flock = fcntl.flock
    calls = []

    def flock_after_holder_finished(fh, op):
        if not calls:  # the first attempt: meanwhile the holder ends and removes the file
            calls.append(op)
            os.unlink(tmp_path / ".lock")
        return real_flock(fh, op)

    monkeypatch.setattr(cache.fcntl, "flock", flock_after_holder_finished)
    with run_lock(tmp_path):
        fh = open(tmp_path / ".lock")  # the lock this run holds is the file at the path
        with pytest.raises(BlockingIOError):
            real_flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.close()


def test_run_json_merges_stages(tmp_path):
    from fvgen.core.cache import StageResult

    a = StageResult("priors", "k1", tmp_path / "priors", "computed", 1.0, {"points": 10})
    b = StageResult("fit", "k2", tmp_path / "fit", "computed", 2.0, {"gaussians": 5})
    write_run_json(tmp_path, "fvgen reconstruct", [a, b])
    c = StageResult("warp/orbit", "k3", tmp_path / "warp/orbit", "computed", 0.5, {})
    write_run_json(tmp_path, "fvgen warp", [a, c])
    data = json.loads((tmp_path / "run.json").read_text())
    assert [s["stage"] for s in data["stages"]] == ["fit", "priors", "warp/orbit"]
    assert data["command"] == "fvgen warp"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".run.json")]
