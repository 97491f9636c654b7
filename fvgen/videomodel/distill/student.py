"""What a saved student asks of the sampler: ``fvgen generate`` and ``reconstruct`` read it so a
student model folder samples with its own steps and no CFG unless told otherwise."""

from __future__ import annotations

import json
from pathlib import Path


def student_sampling(model_dir: str | Path) -> dict | None:
    """``{"steps": 4, "cfg": 1.0}`` for a model folder written by ``train_distill`` (its
    ``teacher.json`` has a ``student`` entry), None for a teacher's folder."""
    meta_path = Path(model_dir) / "teacher.json"
    if not meta_path.is_file():
        return None
    student = json.loads(meta_path.read_text()).get("student")
    if not isinstance(student, dict):
        return None
    return {"steps": int(student["steps"]), "cfg": float(student["cfg"])}
