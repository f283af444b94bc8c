"""PyTorch DDP plumbing: ranks come from the environment ``torchrun`` sets.

A single-process run never touches ``torch.distributed``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from jdrl.runtime import choose_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this process group was started by setup() (so teardown() ends it)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device_preference: str = "auto") -> Dist:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1); NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(device_preference, local_rank)
    owns_group = False
    if world > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not torch_dist.is_initialized():
            torch_dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            owns_group = True
    return Dist(rank, world, local_rank, device, owns_group)


def teardown(dist: Dist) -> None:
    if dist.owns_group and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def any_rank(dist: Dist, flag: bool) -> bool:
    """True on every rank if ``flag`` is true on any rank."""
    if not dist.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=dist.device)
    torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def barrier(dist: Dist) -> None:
    if dist.enabled:
        torch_dist.barrier()
