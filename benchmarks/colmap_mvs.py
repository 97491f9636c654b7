"""Dense prior backends compared at held-out cameras: COLMAP PatchMatch (CUDA) vs the plane sweep.

For fern, dtu_scan24 and fox at their 3-view splits (benchmarks/splits.py) with ground-truth
cameras and no SfM points (both backends find the depth range with fvgen.priors.mvs's coarse
sweep), builds the dense cloud with each backend and scores it as benchmarks/warp_quality.py does
(:func:`warp_quality.evaluate_cloud`): coverage and covered-pixel PSNR of the warp at the test
cameras (tight and adaptive splats), whole-frame PSNR / SSIM of the tight warp with its holes filled
(biharmonic), MVS seconds. COLMAP needs pycolmap-cuda12 and a GPU (``benchmarks/gpu_colmap_mvs.sh``
installs it on the GPU host); without it the COLMAP rows carry the one-line reason.

``--variant NAME=k=v,k=v`` adds COLMAP settings to compare (fields of ColmapMvsConf), e.g.
``--variant colmap_default_filter=filter_min_num_consistent=2,filter_min_triangulation_angle=3``.

The evaluation scenes live in ../shared/datasets, which does not travel to the GPU host:
``python benchmarks/colmap_mvs.py --pack .gpu/eval_scenes`` copies what this benchmark reads (each
scene's cameras_opencv.json and its train/test images) into a folder the device call can carry;
there, ``--datasets .gpu/eval_scenes`` reads from it.

Usage: ``python benchmarks/colmap_mvs.py [--scenes ...] [--device cuda] [--datasets DIR] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from fvgen.core.cameras import read_cameras_opencv_json  # noqa: E402
from fvgen.priors.colmap_mvs import ColmapMvsConf, colmap_available, colmap_dense  # noqa: E402
from fvgen.core.config import parse_assignments  # noqa: E402
from fvgen.core.errors import FvgenError  # noqa: E402
from fvgen.priors.mvs import MvsConf, dense_point_cloud  # noqa: E402
from fvgen.priors.mvs_backend import union_cloud  # noqa: E402
from fvgen.core.datasets import EVAL_ROOT as DATASETS, EVAL_SCENES as SCENES, split  # noqa: E402
from warp_quality import evaluate_cloud, load_view, scene_image_size  # noqa: E402


def pack(dest: Path, scenes: list[str], source: Path = DATASETS) -> int:
    """Copy each scene's cameras_opencv.json and the images of its split into ``dest``; returns
    the bytes copied."""
    total = 0
    for name in scenes:
        cams = read_cameras_opencv_json(source / name / "cameras_opencv.json")
        train, test = split(name, cams)
        files = ["cameras_opencv.json"] + [cams[i].name for i in train + test]
        for f in files:
            out = dest / name / f
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name / f, out)
            total += out.stat().st_size
    return total


def parse_variant(text: str) -> tuple[str, ColmapMvsConf]:
    """``NAME=field=value,field=value`` -> (NAME, ColmapMvsConf with those fields)."""
    name, _, rest = text.partition("=")
    types = {f.name: f.type for f in fields(ColmapMvsConf)}
    kw = {}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition("=")
        if k not in types:
            raise SystemExit(f"--variant {name}: ColmapMvsConf has no field {k}")
        t = types[k]
        kw[k] = (v.lower() in ("1", "true", "yes")) if t == "bool" else (
            int(v) if t == "int" else float(v) if t == "float" else v)
    return name, ColmapMvsConf(**kw)


def run_scene(name: str, root: Path, backends: dict, device: str, keep: Path | None,
              unions: tuple[str, ...] = (), sweep_conf: MvsConf = MvsConf()) -> list[dict]:
    """One row per backend, then one per ``A+B`` of ``unions``: the two clouds concatenated and
    cleaned once more with ``sweep_conf`` (:func:`fvgen.priors.mvs_backend.union_cloud`, what
    ``priors.mvs.backend = "sweep+colmap"`` runs)."""
    cams = read_cameras_opencv_json(root / name / "cameras_opencv.json")
    train, test = split(name, cams)
    size = scene_image_size(name)
    tr = [load_view(root / name, cams[i], size) for i in train]
    imgs = np.stack([t[0] for t in tr])
    train_cams = [t[1] for t in tr]
    rows, clouds = [], {}
    for label, conf in backends.items():
        row = {"scene": name, "backend": label, "train": train, "test": test}
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.time()
        try:
            if isinstance(conf, MvsConf):
                cloud, info = dense_point_cloud(imgs, train_cams, None, conf, device=device)
            else:
                work = keep / name / label if keep else None
                cloud, info = colmap_dense(imgs, train_cams, None, conf, work, device=device)
        except FvgenError as e:
            row["error"] = str(e)
            rows.append(row)
            print(f"{name} {label}: {e}", flush=True)
            continue
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        row["mvs_seconds"] = round(time.time() - t0, 2)
        clouds[label] = (cloud, row["mvs_seconds"])
        row.update(evaluate_cloud(cloud, root / name, cams, test, size, device))
        row["mvs_info"] = {k: v for k, v in info.items() if k != "conf"}
        row["conf"] = asdict(conf)
        rows.append(row)
        print(f"{name} {label}: {len(cloud)} points, coverage {row['coverage_tight']:.3f}, "
              f"PSNR covered {row['psnr_covered_tight']:.2f}, filled {row['psnr_filled_tight']:.2f} / "
              f"{row['ssim_filled_tight']:.3f}, MVS {row['mvs_seconds']:.1f} s", flush=True)
    for pair in unions:  # both clouds in one: the sweep's coverage with COLMAP's accurate points
        a, b = pair.split("+")
        if a not in clouds or b not in clouds:
            continue
        (ca, ta), (cb, tb) = clouds[a], clouds[b]
        t0 = time.time()
        both, info = union_cloud([ca, cb], sweep_conf)  # as priors.mvs.backend = "sweep+colmap" does
        row = {"scene": name, "backend": pair, "train": train, "test": test,
               "mvs_seconds": round(ta + tb + time.time() - t0, 2)}
        row.update(evaluate_cloud(both, root / name, cams, test, size, device))
        row["mvs_info"] = {**info, f"points_{a}": len(ca), f"points_{b}": len(cb)}
        rows.append(row)
        print(f"{name} {pair}: {len(both)} points, coverage {row['coverage_tight']:.3f}, "
              f"PSNR covered {row['psnr_covered_tight']:.2f}, filled {row['psnr_filled_tight']:.2f} / "
              f"{row['ssim_filled_tight']:.3f}", flush=True)
    return rows


def warm_up(device: str) -> None:
    """One small plane sweep first, so that no timed run pays for CUDA's start-up in this process
    (each COLMAP run starts its own process: that cost is part of the backend)."""
    rng = np.random.default_rng(0)
    imgs = rng.random((3, 48, 64, 3)).astype(np.float32)
    from fvgen.core.cameras import Camera

    cams = [Camera([[60, 0, 31.5], [0, 60, 23.5], [0, 0, 1]],
                   np.array([[1, 0, 0, x], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]), 64, 48)
            for x in (-0.3, 0.0, 0.3)]
    try:
        dense_point_cloud(imgs, cams, None, MvsConf(), device=device, depth_range=(2.0, 8.0))
    except FvgenError:
        pass  # noise may give no consistent points: the kernels ran all the same
    torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", nargs="+", default=list(SCENES))
    ap.add_argument("--datasets", type=Path, default=DATASETS, help="folder holding the scenes")
    ap.add_argument("--pack", type=Path, default=None,
                    help="copy what the benchmark reads into this folder, then stop")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-sweep", action="store_true", help="COLMAP only")
    ap.add_argument("--variant", action="append", default=[],
                    help="extra COLMAP settings: NAME=field=value,field=value (repeatable)")
    ap.add_argument("--keep", type=Path, default=None, help="keep COLMAP workspaces under this folder")
    ap.add_argument("--sweep", nargs="*", default=[], metavar="KEY=VALUE",
                    help="MvsConf settings of the sweep row (TOML values), e.g. the default preset's: "
                         "max_image_size=480 num_planes=96 propagation_iters=2 ncc_threshold=0.55")
    ap.add_argument("--union", action="append", default=[], metavar="A+B",
                    help="also score the union of two backends' clouds, e.g. sweep+colmap (repeatable)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "colmap_mvs.json")
    args = ap.parse_args()
    if args.pack:
        n = pack(args.pack, args.scenes, args.datasets)
        print(f"packed {', '.join(args.scenes)} into {args.pack}: {n / 2**20:.1f} MiB")
        return
    if not args.datasets.exists():
        raise SystemExit(f"datasets not found at {args.datasets}")
    ok, reason = colmap_available()
    print(f"COLMAP backend: {'available' if ok else 'not available'}: {reason}", flush=True)
    sweep = MvsConf(**parse_assignments(args.sweep))
    backends: dict = {} if args.no_sweep else {"sweep": sweep}
    backends["colmap"] = ColmapMvsConf()
    for v in args.variant:
        name, conf = parse_variant(v)
        backends[name] = conf
    if args.device.startswith("cuda"):
        warm_up(args.device)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    out = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": torch.__version__,
        "device": args.device,
        "gpu": gpu,
        "machine": platform.machine(),
        "colmap_available": [ok, reason],
        "cameras": "ground truth (cameras_opencv.json); no sparse points (coarse-sweep depth range)",
        "rows": [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for s in args.scenes:  # written after each scene: a run cut short keeps what it measured
        out["rows"] += run_scene(s, args.datasets, backends, args.device, args.keep, tuple(args.union), sweep)
        args.out.write_text(json.dumps(out, indent=1))
    rows = out["rows"]
    print("| scene | backend | points | coverage (tight) | PSNR covered (tight) | coverage (adaptive) "
          "| PSNR covered (adaptive) | PSNR / SSIM filled (tight) | MVS s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['scene']} | {r['backend']} | failed: {r['error']} | | | | | | |")
            continue
        print(f"| {r['scene']} | {r['backend']} | {r['points']} | {r['coverage_tight']:.3f} | "
              f"{r['psnr_covered_tight']:.2f} | {r['coverage_adaptive']:.3f} | "
              f"{r['psnr_covered_adaptive']:.2f} | {r['psnr_filled_tight']:.2f} / "
              f"{r['ssim_filled_tight']:.3f} | {r['mvs_seconds']:.1f} |")


if __name__ == "__main__":
    main()
