"""``OUT/report.html``: one self-contained page (images embedded as JPEG data URLs) to look at a run:
the input photos, a few warps with the novel views generated from them and the fitted scene rendered
at the same cameras, and, for ``fvgen eval``, the held-out views (ground truth | render | error) with
their metrics."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Sequence

import numpy as np


def _data_url(img: np.ndarray, max_side: int = 480) -> str:
    from PIL import Image

    from ..core.video import to_uint8

    im = Image.fromarray(to_uint8(img))
    s = min(1.0, max_side / max(im.size))
    if s < 1.0:
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.LANCZOS)
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _figure(img: np.ndarray, caption: str, max_side: int = 480) -> str:
    return (f'<figure><img src="{_data_url(img, max_side)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _row(title: str, figures: Sequence[str]) -> str:
    return f"<h2>{html.escape(title)}</h2><div class=row>{''.join(figures)}</div>" if figures else ""


def _pick(n: int, k: int) -> list[int]:
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, min(n, k))}) if n else []


def write_report(out: Path, title: str, inputs: Sequence[tuple[str, np.ndarray]],
                 generated: Path | None = None, warp: Path | None = None, scene: Path | None = None,
                 metrics: dict | None = None, compare: Path | None = None, stages: Sequence[dict] = (),
                 device: str = "cpu", views: int = 4) -> Path:
    """Write ``out`` (an .html file). ``inputs``: (name, image) pairs; ``warp`` / ``generated``: stage
    folders (rgb/, mask/, cameras.json); ``scene``: the fitted .ply, rendered at the shown generated
    cameras; ``metrics`` / ``compare``: an evaluation's metrics.json dict and its compare/ folder."""
    from ..core.images import read_image

    parts = [f"<h1>{html.escape(title)}</h1>"]
    if stages:
        rows = "".join(f"<tr><td>{html.escape(str(s.get('stage')))}</td><td>{html.escape(str(s.get('status')))}</td>"
                       f"<td>{float(s.get('seconds', 0)):.1f}</td></tr>" for s in stages)
        parts.append(f"<table><tr><th>stage</th><th>status</th><th>seconds</th></tr>{rows}</table>")
    parts.append(_row("Input photos", [_figure(img, name) for name, img in inputs]))
    if generated is not None and (generated / "cameras.json").is_file():
        from ..render.warp import read_view_folder

        cams, frames, conf = read_view_folder(generated)
        pick = _pick(len(cams), views)
        if warp is not None and (warp / "cameras.json").is_file():
            _, warps, _ = read_view_folder(warp)
            parts.append(_row("Warps (the point cloud at novel cameras; black: unseen)",
                              [_figure(warps[i], cams[i].name) for i in pick]))
        parts.append(_row("Generated views", [_figure(frames[i], cams[i].name) for i in pick]))
        parts.append(_row("Their confidence in the fit (white: 1)", [_figure(conf[i], cams[i].name) for i in pick]))
        if scene is not None and scene.is_file():
            import torch

            from ..render.splats import load_ply
            from ..render.video import render_frames

            splats = load_ply(scene, device=device)
            with torch.no_grad():
                renders = render_frames(splats, [cams[i] for i in pick])
            parts.append(_row("The fitted scene at those cameras", [_figure(r, cams[i].name) for r, i in zip(renders, pick)]))
    if metrics is not None:
        res = metrics.get("results", {})
        lp = res.get("lpips")
        parts.append("<h2>Held-out views</h2><p>" + html.escape(
            f"PSNR {res.get('psnr', float('nan')):.2f} dB, SSIM {res.get('ssim', float('nan')):.3f}, LPIPS "
            f"{'n/a (' + str(metrics.get('lpips_reason')) + ')' if lp is None else f'{lp:.3f}'}; poses "
            f"{metrics.get('poses')}, generator {metrics.get('generator', 'none')}"
            + (f"; test poses aligned (as given: {raw['psnr']:.2f} dB, SSIM {raw['ssim']:.3f})"
               if metrics.get("headline") == "aligned" and (raw := metrics.get("results_raw")) else "")) + "</p>")
        figs = []
        for row in metrics.get("per_view", []):
            f = Path(compare or "") / f"{Path(row['view']).stem}.png"
            if f.is_file():
                figs.append(_figure(read_image(f), f"{row['view']}: {row['psnr']:.2f} dB, SSIM {row['ssim']:.3f} "
                                    "(ground truth | render | error x4)", max_side=960))
        parts.append(f"<div class=row>{''.join(figs)}</div>")
        parts.append(f"<details><summary>metrics.json</summary><pre>{html.escape(json.dumps(metrics, indent=1, default=str))}"
                     "</pre></details>")
    page = ("<!doctype html><html><head><meta charset=utf-8><title>" + html.escape(title) + "</title><style>"
            "body{font-family:sans-serif;margin:1.5em;background:#fafafa;color:#222}"
            ".row{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0;max-width:24%}img{display:block;max-width:100%;"
            "border:1px solid #ccc}figcaption{font-size:12px;color:#555}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}pre{font-size:11px}"
            "</style></head><body>" + "".join(parts) + "</body></html>")
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page)
    tmp.replace(out)
    return out
