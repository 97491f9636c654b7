"""A short distillation on the CPU and what it does to sampling quality, for the issue-19 record.

Distils ``--teacher`` (a model folder, e.g. a tiny-pixel teacher trained for a few hundred steps
on ``--data``) with each ``--ablations`` entry (``train_distill``, config ``--config``), then scores
on the same examples (training examples: this measures fitting, not generalisation) the PSNR of
the harmonic fill (a zero correction), the teacher (``--teacher-steps`` with CFG 3.0, and 4 steps
without) and each student (4 steps, no CFG), on all pixels and on hole pixels. Writes a JSON
with the distillation logs' first and last losses and the scores.

    python benchmarks/distill_smoke.py --teacher /tmp/dsmoke/teacher/model --data /tmp/dex \
        --out /tmp/dsmoke/runs --gan-steps 60 --dmd-steps 60 --json benchmarks/results/distill_smoke_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402


from fvgen.videomodel.data import ExampleBank  # noqa: E402
from fvgen.videomodel.model import TeacherModel  # noqa: E402
from fvgen.videomodel.sample import sample_latents  # noqa: E402
from fvgen.videomodel.distill.train import train_distill  # noqa: E402


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """PSNR in dB of clips in [-1, 1] (as [0, 1] images), over the pixels where ``mask`` is 1."""
    d = ((a - b) / 2) ** 2
    if mask is not None:
        m = mask.expand_as(d)
        mse = float((d * m).sum() / m.sum().clamp_min(1))
    else:
        mse = float(d.mean())
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def score(model: TeacherModel, bank: ExampleBank, steps: int, cfg: float, fill_only: bool = False) -> dict:
    all_, holes = [], []
    for i in range(len(bank)):
        b = bank.batch([i])
        if fill_only:
            out = b["fill"]
        else:
            out = sample_latents(model, b["ref"], b["warp"], b["mask"], steps=steps, cfg=cfg,
                                 generator=torch.Generator().manual_seed(i))
        all_.append(psnr(out, b["gt"]))
        holes.append(psnr(out, b["gt"], (b["mask"] < 0.5).float()))
    return {"psnr_all": round(float(np.mean(all_)), 3), "psnr_holes": round(float(np.mean(holes)), 3)}


def loss_trace(log: Path) -> dict:
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    out = {}
    for stage in ("gan", "dmd"):
        rs = [r for r in rows if r.get("stage") == stage and "event" not in r]
        if not rs:
            continue
        keys = [k for k in rs[-1] if k.startswith(("loss", "d_", "weight", "fake_minus"))]
        n = max(1, len(rs) // 5)  # first and last fifth of the logged steps, averaged
        out[stage] = {k: {"first": round(float(np.mean([r[k] for r in rs[:n] if k in r] or [np.nan])), 4),
                          "last": round(float(np.mean([r[k] for r in rs[-n:] if k in r] or [np.nan])), 4)}
                      for k in keys}
        out[stage]["steps"] = rs[-1]["step"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--config", default="tiny-pixel")
    ap.add_argument("--ablations", nargs="+", default=["full"])
    ap.add_argument("--gan-steps", type=int, default=60)
    ap.add_argument("--dmd-steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--teacher-steps", type=int, default=50)
    ap.add_argument("--overrides", default="{}", help="JSON of more DistillConf settings")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    t0 = time.time()
    res = {"teacher": a.teacher, "data": a.data, "config": a.config, "gan_steps": a.gan_steps,
           "dmd_steps": a.dmd_steps, "batch_size": a.batch_size, "overrides": json.loads(a.overrides),
           "threads": torch.get_num_threads(), "runs": {}}
    teacher = TeacherModel.from_pretrained(Path(a.teacher))
    bank = ExampleBank(a.data, teacher.preset.frames, fill=teacher.preset.fill)
    res["examples"] = len(bank)
    res["scores"] = {"harmonic fill": score(teacher, bank, 0, 1.0, fill_only=True),
                     f"teacher {a.teacher_steps} steps cfg 3": score(teacher, bank, a.teacher_steps, 3.0),
                     "teacher 4 steps cfg 1": score(teacher, bank, 4, 1.0)}
    print(json.dumps(res["scores"]), flush=True)
    for ab in a.ablations:
        t = time.time()
        r = train_distill(a.teacher, a.out / ab, "all", ab, a.config, resume=False, data=tuple(a.data),
                          gan_steps=a.gan_steps, dmd_steps=a.dmd_steps, batch_size=a.batch_size, sample_every=0,
                          ckpt_every=10 ** 6, log_every=1, **json.loads(a.overrides))
        student = TeacherModel.from_pretrained(Path(r["model"]))
        res["runs"][ab] = {"seconds": round(time.time() - t, 1), "losses": loss_trace(a.out / ab / "log.jsonl")}
        res["scores"][f"student ({ab}) 4 steps cfg 1"] = score(student, bank, 4, 1.0)
        print(ab, json.dumps(res["runs"][ab]), json.dumps(res["scores"][f"student ({ab}) 4 steps cfg 1"]), flush=True)
    res["seconds_total"] = round(time.time() - t0, 1)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
