"""The evaluation report's summary line (fvgen.evaluation.report)."""

from __future__ import annotations

import numpy as np

from fvgen.evaluation.report import write_report


def _metrics(headline: str) -> dict:
    return {"results": {"psnr": 14.5, "ssim": 0.5, "lpips": None}, "lpips_reason": "no weights", "poses": "estimated",
            "generator": "none", "headline": headline, "results_raw": {"psnr": 12.25, "ssim": 0.4, "lpips": None},
            "per_view": []}


def test_summary_names_aligned_test_poses_and_the_raw_score(tmp_path):
    inputs = [("a.png", np.zeros((8, 8, 3), np.float32))]
    aligned = write_report(tmp_path / "a.html", "t", inputs, metrics=_metrics("aligned")).read_text()
    assert "PSNR 14.50 dB" in aligned and "test poses aligned (as given: 12.25 dB, SSIM 0.400)" in aligned
    raw = write_report(tmp_path / "b.html", "t", inputs, metrics=_metrics("raw")).read_text()
    assert "PSNR 14.50 dB" in raw and "aligned" not in raw
