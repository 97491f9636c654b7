"""How many graphs regional compilation makes of a UNet preset's repeated blocks, on any machine.

``sampling.py --compile regional`` compiles each of the UNet's ``REPEATED_BLOCKS`` classes once per
parameter shape; dynamo stops recompiling a function after ``recompile_limit`` graphs and leaves the
rest eager. This traces two UNet passes with the ``eager`` backend (the same guards and recompiles,
no code generation, so it runs on a CPU) and prints the graphs per block function, to check that a
limit covers them.

Usage: ``python benchmarks/regional_graphs.py [--preset paper] [--limit 64]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch._dynamo
from torch._dynamo.utils import counters

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sampling import REPEATED_BLOCKS, unet_inputs  # noqa: E402

from fvgen.videomodel.model import TeacherModel  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--limit", type=int, default=64, help="torch._dynamo.config.recompile_limit")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch._dynamo.config.recompile_limit = a.limit
    model = TeacherModel.random(a.preset).eval()
    blocks = [m for m in model.unet.modules() if type(m).__name__ in REPEATED_BLOCKS]
    graphs: list[str] = []

    def backend(gm, example_inputs):  # one backend for every block: dynamo's cache is per backend
        inputs = " ".join(n.name for n in gm.graph.nodes if n.op == "placeholder")
        graphs.append("SpatioTemporalResBlock" if "spatial_res_block" in inputs else "TransformerSpatioTemporalModel")
        return gm.forward

    for m in blocks:
        m.compile(backend=backend)
    x, cat, tokens = unet_inputs(model, "cpu")
    t = time.time()
    with torch.no_grad():
        for ts in (999, 749):
            model.denoise(x, torch.tensor([ts]), cat, tokens)
    print(f"preset {a.preset}: {len(blocks)} repeated blocks, latents {tuple(x.shape)}, two passes traced in "
          f"{time.time() - t:.0f} s")
    for name in REPEATED_BLOCKS:
        n = graphs.count(name)
        print(f"  {name}: {n} graphs" + (f" (the limit of {a.limit} reached: the rest run eager)" if n >= a.limit else ""))
    print(f"  unique graphs {counters['stats']['unique_graphs']}, frames {dict(counters['frames'])}")


if __name__ == "__main__":
    main()
