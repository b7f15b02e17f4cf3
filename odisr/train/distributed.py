"""Data-parallel training with PyTorch's own engine: ``torchrun --nproc-per-node N -m odisr train ...``.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :meth:`Dist.from_env`
reads them (a plain process is rank 0 of 1). The process group uses NCCL on CUDA (one GPU per process,
``cuda:LOCAL_RANK``) and gloo on the CPU; the network is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`,
which averages the gradients of the ranks. Every rank draws the same global batch and cuts its own slice
(:meth:`Dist.shard`); only rank 0 writes files and validates.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["Dist"]

#: How long ranks wait for each other (validation on rank 0 can take a while on the CPU).
TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: ``rank`` of ``world`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Dist:
        """From torchrun's environment variables; rank 0 of 1 without them."""
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files, validates and shows progress."""
        return self.rank == 0

    def start(self, device: torch.device) -> torch.device:
        """Join the process group (NCCL on CUDA, gloo otherwise) and return this rank's device."""
        if not self.enabled:
            return device
        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch_dist.init_process_group(backend, rank=self.rank, world_size=self.world, timeout=TIMEOUT)
        return device

    def stop(self) -> None:
        if self.enabled and torch_dist.is_initialized():
            torch_dist.destroy_process_group()

    def shard(self, batch: int) -> slice:
        """This rank's slice of a global batch of ``batch`` patches.

        Raises:
            ValueError: ``batch`` is not a multiple of the number of processes.
        """
        if batch % self.world:
            raise ValueError(f"data.batch ({batch}) must be a multiple of the number of processes ({self.world})")
        n = batch // self.world
        return slice(self.rank * n, (self.rank + 1) * n)

    def wrap(self, net: nn.Module, unused: bool) -> nn.Module:
        """``net`` in DDP when distributed (``unused``: some parameters get no gradient), else ``net`` itself."""
        if not self.enabled:
            return net
        device_ids = [net_device(net).index] if net_device(net).type == "cuda" else None
        return DistributedDataParallel(net, device_ids=device_ids, find_unused_parameters=unused)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of ``values`` over the ranks (all-reduce; ``values`` itself when not distributed)."""
        if not self.enabled:
            return values
        values = values.clone()
        torch_dist.all_reduce(values)
        return values / self.world

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (``[obj]`` when not distributed)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        torch_dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()


def net_device(net: nn.Module) -> torch.device:
    """The device of ``net``'s first parameter (CPU for a network without parameters)."""
    param = next(net.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
