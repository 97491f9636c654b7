"""torch.distributed for the training runs: launched by torchrun, the environment variables switch
on DDP (NCCL on CUDA, gloo on CPU); without them everything runs in one process.
"""

from __future__ import annotations

import os

import torch

# ----------------------------------------------------------------------------- distributed

class Dist:
    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1
        if torch.cuda.is_available():
            torch.cuda.set_device(self.local)
            self.device = torch.device("cuda", self.local)
        else:
            self.device = torch.device("cpu")
        if self.enabled and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.enabled:
            torch.distributed.barrier()

    def all_mean(self, x: float) -> float:
        if not self.enabled:
            return x
        t = torch.tensor([x], device=self.device, dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return float(t) / self.world

    def any(self, flag: bool) -> bool:
        if not self.enabled:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t)


def start_process(seed: int) -> Dist:
    """This training process's place in the group, its seed (offset by rank) and TF32 on CUDA."""
    dist = Dist()
    torch.manual_seed(seed + dist.rank)
    if dist.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return dist
