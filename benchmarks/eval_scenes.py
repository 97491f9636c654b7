"""`fvgen eval` on the 3-view splits of fern, dtu_scan24 and fox, with ground-truth and with
estimated poses, for one or more generators (``none``: the photos alone; ``fill``; a model folder)
and fit/generation settings; prints a markdown table and writes the figures as JSON.

Usage: python benchmarks/eval_scenes.py [--scenes fern dtu_scan24 fox] [--poses gt estimated]
           [--generators none fill] [--set fit.generated_weight=0.3 ...] [--preset default]
           [--iterations N] [--init prior|random] [--data ../shared/datasets] [--out eval_runs] [--json F]
With ``--set eval.align_test_poses=true`` each row also holds the scores after test-camera alignment
(the headline) beside the raw ones.
Each run caches under OUT/<scene>-<poses>-<preset>/, so later calls reuse the priors (and the warps
and generated views while their settings stay).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import traceback
from pathlib import Path


from fvgen.presets import load_preset  # noqa: E402
from fvgen.core.config import parse_assignments, with_overrides  # noqa: E402
from fvgen.evaluation.heldout import scene_image_files  # noqa: E402
from fvgen.pipeline import evaluate  # noqa: E402
from fvgen.core.datasets import EVAL_ROOT as DATASETS, split_files  # noqa: E402


def copy_scene(root: Path, dest: Path, image_names: list[str]) -> None:
    """The scene's pose files (all of them: they enter the priors' cache key) and the named images."""
    import shutil

    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if p.is_file() and (p.suffix in (".json", ".npy", ".npz", ".txt", ".bin") or p.name in image_names):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest / rel)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", nargs="+", default=["fern", "dtu_scan24", "fox"])
    ap.add_argument("--poses", nargs="+", default=["gt", "estimated"])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--iterations", type=int)
    ap.add_argument("--init", choices=["prior", "random"])
    ap.add_argument("--generators", nargs="+", default=["none"], help="none, fill, teacher, or model folders")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="preset overrides (TOML values), e.g. fit.input_share=0.7 generate.views=32")
    ap.add_argument("--data", type=Path, default=DATASETS)
    ap.add_argument("--out", type=Path, default=Path("eval_runs"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--priors-only", action="store_true",
                    help="only compute (or check) the priors stage of each run, e.g. on a CPU host before "
                         "carrying the run folders to a GPU host")
    ap.add_argument("--copy-data", type=Path,
                    help="copy each scene's pose files and split images here (to carry them to another host)")
    args = ap.parse_args()
    conf = load_preset(args.preset)
    if args.iterations:
        conf = with_overrides(conf, **{"fit.iterations": args.iterations})
    if args.init:
        conf = with_overrides(conf, **{"fit.init": args.init})
    sets = parse_assignments(args.set)
    conf = with_overrides(conf, **sets)
    rows = []
    for scene in args.scenes:
        root = args.data / scene
        files_all = scene_image_files(root)
        names = [f.name for f in files_all]
        train_n, test_n = split_files(scene, args.data)
        train, test = [names.index(n) for n in train_n], [names.index(n) for n in test_n]
        if args.copy_data:
            copy_scene(root, args.copy_data / scene, train_n + test_n)
        for poses in args.poses:
            tag = f"{scene}-{poses}-{conf.name}" + (f"-{args.init}" if args.init else "")
            t0 = time.perf_counter()
            if args.priors_only:
                from fvgen.stages import priors as priors_stage

                files = tuple(files_all[i] for i in train)
                res = priors_stage.main(conf.images, conf.priors, priors_stage.PriorsInputs(
                    files, root if poses == "gt" else None), args.out / tag, "cpu")
                print(json.dumps({"scene": scene, "poses": poses, "priors": res.status, **res.figures}), flush=True)
                continue
            for generator in args.generators:
                t0 = time.perf_counter()
                gconf = with_overrides(conf, **{"generate.generator": generator})
                try:
                    m = evaluate(root, train, test, poses, args.out / tag, gconf, args.device)
                    row = {"scene": scene, "poses": poses, "generator": generator, "settings": sets,
                           "psnr": m["results"]["psnr"], "ssim": m["results"]["ssim"], "lpips": m["results"]["lpips"],
                           "headline": m["headline"], "raw": m["results_raw"], "aligned": m["results_aligned"],
                           "train_psnr": m["fit"].get("train_psnr"), "gaussians": m["fit"].get("gaussians"),
                           "stage_s": {k: v["seconds"] for k, v in m["stages"].items()},
                           "fit_s": m["fit"].get("seconds"), "wall_s": round(time.perf_counter() - t0, 1),
                           "size": m["image_size"], "per_view": [(r["view"], r["psnr"], r["ssim"]) for r in m["per_view"]]}
                except Exception as e:  # record and carry on: one failing scene must not hide the others
                    traceback.print_exc()
                    row = {"scene": scene, "poses": poses, "generator": generator, "error": f"{type(e).__name__}: {e}"}
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "per_view"}), flush=True)
                if args.json:
                    args.json.write_text(json.dumps({"preset": conf.name, "iterations": conf.fit.iterations,
                                                     "init": conf.fit.init, "settings": sets, "host": platform.node(),
                                                     "device": _device_name(), "date": time.strftime("%Y-%m-%d"),
                                                     "rows": rows}, indent=1))
    print("\n| scene | poses | generator | PSNR | SSIM | raw PSNR | raw SSIM | train PSNR | wall s |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['scene']} | {r['poses']} | {r['generator']} | failed: {r['error'][:60]} | | | | | |")
        else:  # PSNR/SSIM: the headline (test poses aligned with eval.align_test_poses=true), then the raw scores
            print(f"| {r['scene']} | {r['poses']} | {r['generator']} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                  f"{r['raw']['psnr']:.2f} | {r['raw']['ssim']:.3f} | {r['train_psnr']:.2f} | {r['wall_s']} |")


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or 'x86-64'})"


if __name__ == "__main__":
    main()
