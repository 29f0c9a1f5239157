"""More than one process: torch's DistributedDataParallel, started by ``torchrun``.

``torchrun --nproc_per_node N -m fiftyone_ram.cli finetune ...`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; each process then trains on its share of every epoch (``data.epoch_batches``) with its own
batch of ``batch_size`` images (upstream's per-GPU batch) and DDP averages the gradients. NCCL on GPUs, gloo on
CPUs. Only the main process validates and writes; the others wait for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast(self, value):
        """The main process's ``value`` on every process (a picklable object)."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def start(device: str | None) -> tuple[World, torch.device]:
    """The process group when launched by torchrun (else a world of one), and this process's device."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(), torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(local_rank)
        return World(rank, size, local_rank), torch.device("cuda", local_rank)
    return World(rank, size, local_rank), torch.device("cpu")


def stop(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
