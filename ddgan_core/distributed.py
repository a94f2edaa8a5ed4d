"""Data-parallel training under ``torchrun``: one process per device, one global batch.

``torchrun --nproc_per_node N -m ddgan_core train ddpm ...`` starts N processes with the usual
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``);
:func:`current_world` joins them into one process group (NCCL on GPUs, gloo on CPUs) and returns
a :class:`World`. Without that environment it returns the one-process world, whose methods do
nothing, so a trainer written against :class:`World` runs unchanged alone.

The scheme keeps a run's numbers those of one process with the same global batch:

* every process draws the *whole* global batch (data indices, timesteps, noise) from the same
  seeded generators, and keeps its contiguous slice (:meth:`World.shard`), so the random
  streams, and with them checkpoints and resumption, are the same in every process;
* each process's loss is the mean over its slice; averaging the gradients over the processes
  (:meth:`World.average_gradients`, an all-reduce) gives the gradient of the global mean, since
  the slices are equal in size;
* every process then takes the same optimiser step, so the weights stay identical, and only the
  first process (:attr:`World.is_main`) writes files.

Differences from one process are float rounding in the reductions (the test compares with a
tolerance). Dropout draws from each process's global RNG, so with dropout > 0 the processes'
masks differ from the single-process ones: the run is statistically, not numerically, the same.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["World", "current_world"]


@dataclass(frozen=True)
class World:
    """The processes of a data-parallel run (``size == 1``: a plain single-process run)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints, model files and logs."""
        return self.rank == 0

    def check_batch(self, batch_size: int, what: str) -> None:
        """Refuse a global batch that does not split evenly over the processes."""
        if batch_size % self.size:
            raise ValueError(f"{what}={batch_size} does not split over {self.size} processes; "
                             f"use a multiple of {self.size}")

    def shard(self, batch: torch.Tensor, groups_of: int = 1) -> torch.Tensor:
        """This process's share of a global batch (the batch itself when alone).

        ``groups_of = 1``: a contiguous slice. ``groups_of = G``: whole minibatch-stddev groups
        of the discriminator (:func:`~ddgan_core.nets.discriminator.minibatch_stddev`, where
        sample ``i`` of a batch of ``B`` is in group ``i mod B/G``), ordered so that the same
        rule on this process's batch forms the same groups; the D's outputs are then those of
        the whole batch. A batch that does not split into whole groups is sliced contiguously.
        """
        if self.size == 1:
            return batch
        b = batch.shape[0]
        per = b // self.size
        if groups_of <= 1 or b % (groups_of * self.size):
            return batch[self.rank * per:(self.rank + 1) * per]
        groups = b // groups_of
        mine = groups // self.size
        first = self.rank * mine
        index = [j + k * groups for k in range(groups_of) for j in range(first, first + mine)]
        return batch[torch.tensor(index, device=batch.device)]

    def average_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Replace each gradient by its mean over the processes (nothing when alone)."""
        if self.size == 1:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over the processes (the tensor itself when alone)."""
        if self.size == 1:
            return value
        value = value.detach().clone()
        dist.all_reduce(value)
        return value / self.size

    def barrier(self) -> None:
        """Wait for every process (nothing when alone)."""
        if self.size > 1:
            dist.barrier()


def current_world(device: torch.device) -> tuple[World, torch.device]:
    """The world of this process and its device: under ``torchrun`` (``WORLD_SIZE`` > 1) the
    process group is joined once (NCCL for CUDA, gloo for the CPU) and a CUDA process takes the
    GPU ``LOCAL_RANK``; otherwise the one-process world and ``device`` unchanged."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(), device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return World(rank=dist.get_rank(), size=dist.get_world_size()), device
