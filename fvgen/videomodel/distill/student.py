"""What a saved student asks of the sampler: ``fvgen generate`` and ``reconstruct`` read it so a
student model folder samples with its own steps and no CFG unless told otherwise."""

from __future__ import annotations

from pathlib import Path


def student_sampling(model_dir: str | Path) -> dict | None:
    """``{"steps": 4, "cfg": 1.0}`` for a model folder written by ``train_distill`` (its config's
    provenance has a ``student`` entry), None for a teacher's folder. The folder must be a model
    folder (:func:`fvgen.videomodel.model.read_model_config` refuses others with one line)."""
    from ..model import read_model_config

    _, provenance = read_model_config(Path(model_dir))
    student = provenance.get("student")
    if not isinstance(student, dict):
        return None
    return {"steps": int(student["steps"]), "cfg": float(student["cfg"])}
