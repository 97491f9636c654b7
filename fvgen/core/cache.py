"""The stage cache: every stage writes one folder ``OUT/<stage>/``, keyed by a hash of its inputs.

A stage folder is complete exactly when its ``stage.json`` exists: it is written inside a
temporary folder that is renamed into place only after the stage finished, so an interrupted run
never leaves a folder that looks complete. A stage whose recorded key equals the key of this run
is reused (``cached``); otherwise it is recomputed (``computed``), and since every key includes
the keys of the stages before it, a changed parameter invalidates that stage and those after it,
nothing before. One run at a time per output folder: a second is refused by a lock.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import __version__
from .errors import FvgenError

STAGE_FILE = "stage.json"


def _jsonable(x: Any) -> Any:
    if dataclasses.is_dataclass(x):
        return {f.name: _jsonable(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in sorted(x.items())}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "tolist"):
        return x.tolist()
    return x


def cache_key(stage: str, version: str, conf: Any, *upstream: str, **inputs: Any) -> str:
    """Hash of a stage's name and code version, its config, the keys of the stages it reads
    and any other inputs (content hashes, trajectory specs...)."""
    payload = {"stage": stage, "version": version, "fvgen": __version__, "conf": _jsonable(conf),
               "upstream": list(upstream), "inputs": _jsonable(inputs)}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class StageResult:
    stage: str
    key: str
    path: Path
    status: str  # "computed" or "cached"
    seconds: float
    figures: dict = field(default_factory=dict)
    run_id: str = ""  # new for every computation of the stage

    @property
    def token(self) -> str:
        """What later stages key on: the key *and* the computation that produced the folder, so
        a recomputed stage (``--force``, or a non-deterministic one) invalidates its successors
        even when its own key is unchanged."""
        return f"{self.key}.{self.run_id}"

    def to_json(self) -> dict:
        return {"stage": self.stage, "key": self.key, "status": self.status,
                "seconds": round(self.seconds, 3), "path": str(self.path), "figures": self.figures}


def read_stage(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / STAGE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError, NotADirectoryError):
        return None


def run_stage(root: Path, name: str, key: str, compute: Callable[[Path], dict],
              force: bool = False) -> StageResult:
    """Reuse ``root/name`` when its key matches, else run ``compute(tmp_dir) -> figures`` in a
    fresh temporary folder and move it into place atomically."""
    root = Path(root)
    final = root / name
    start = time.perf_counter()
    meta = read_stage(final)
    if meta is not None and meta.get("key") == key and not force:
        return StageResult(name, key, final, "cached", time.perf_counter() - start, meta.get("figures", {}),
                           meta.get("run_id", ""))
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        figures = compute(tmp) or {}
        seconds = time.perf_counter() - start
        run_id = uuid.uuid4().hex[:12]
        (tmp / STAGE_FILE).write_text(json.dumps(
            {"stage": name, "key": key, "run_id": run_id, "seconds": seconds, "figures": _jsonable(figures),
             "fvgen": __version__}, indent=1))
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return StageResult(name, key, final, "computed", seconds, _jsonable(figures), run_id)


def replace_dir(new: Path, final: Path) -> None:
    """Put folder ``new`` at ``final``, replacing what was there, without a moment where ``final``
    holds a half-written folder."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
        os.replace(new, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, final)


STAGE_PARENTS = (".", "warp", "generate")  # folders that hold stage folders


def clean_stale(root: Path) -> None:
    """Remove temporary folders left by an interrupted run (call with the lock held); only in
    the folders that hold stages, never elsewhere under ``root``."""
    for parent in STAGE_PARENTS:
        for pattern in (".*.tmp-*", ".*.old-*"):
            for p in (Path(root) / parent).glob(pattern):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)


@contextmanager
def run_lock(root: Path) -> Iterator[None]:
    """Hold ``root/.lock`` for the whole run; a second run on the same folder is refused.

    The lock is a ``flock`` on that file, so the kernel releases it when its holder dies (even by
    ``kill -9``) and the next run takes the folder over. When the run ends (success or error) the
    file is removed, and ``root`` too if this run created it and it holds nothing else. Since
    the file is unlinked while locked, a run that locked it just before the unlink would hold a
    lock nobody else can see: after locking, the run checks that the path still names the file
    it locked, and starts over if not."""
    root = Path(root)
    created = not root.exists()
    lock_path = root / ".lock"
    for _ in range(100):
        try:
            root.mkdir(parents=True, exist_ok=True)
            fh = open(lock_path, "a+")
        except FileNotFoundError:  # another run removed the folder it had created just now
            continue
        except OSError as e:
            raise FvgenError(f"cannot create output folder {root}: {e.strerror}") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise FvgenError(f"{root} is in use by another fvgen run ({holder}); wait for it or use --out") from None
        try:
            same = os.fstat(fh.fileno()).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()  # locked a file that its holder had just removed: try again
    else:
        raise FvgenError(f"cannot lock {lock_path}: it keeps disappearing")
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}")
    fh.flush()
    try:
        clean_stale(root)
        yield
    finally:
        try:
            lock_path.unlink()  # while still locked: nobody can take a lock that is being removed
        except FileNotFoundError:
            pass
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()
        if created:
            try:
                root.rmdir()  # only when empty: a failed first run leaves no folder behind
            except OSError:
                pass


def write_run_json(root: Path, command: str, results: list[StageResult], extra: dict | None = None) -> Path:
    """Record this run's stages in ``root/run.json``; entries of stages this run did not touch
    (e.g. the fit, when only ``fvgen warp`` ran) are kept from earlier runs."""
    path = Path(root) / "run.json"
    try:
        old = json.loads(path.read_text()).get("stages", [])
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        old = []
    new = [r.to_json() for r in results]
    names = {r["stage"] for r in new}
    stages = [s for s in old if isinstance(s, dict) and s.get("stage") not in names] + new
    data = {"command": command, "fvgen": __version__, "stages": stages, **(extra or {})}
    tmp = path.with_name(f".run.json.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)
    return path
