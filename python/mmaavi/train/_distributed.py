"""Data-parallel training on :mod:`torch.distributed`, as launched by ``torchrun``.

``torchrun --nproc_per_node=N script.py`` starts N copies of a script and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each. Training notices
them and runs data-parallel with PyTorch's own engine: the process group is initialised from
the environment (``env://``; NCCL for CUDA devices, gloo for CPU) unless the script already did
it, and the module's loss is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`,
which averages the gradients of every step across the processes.

The choices, and why:

- Every process builds the same model from the same data and seed; DDP also copies process 0's
  weights to the others when it wraps the module.
- Each process trains on its share of every minibatch (:func:`~mmaavi.data.shard_minibatches`),
  so the processes together follow the single-process schedule (same minibatches, same number
  of steps, an averaged gradient).
- Batch normalisation stays local to each process (no ``SyncBatchNorm``): each modality's encoder
  runs only on the cells that measured it, so one process may skip an encoder that another runs
  in the same step, and a synchronising layer would then wait forever. Local statistics over
  each process's share are what per-GPU batch normalisation does in most data-parallel training.
  Running statistics are copied from process 0 before each validation, so all processes hold
  the same model.
- ``find_unused_parameters=True``: the decoders and encoder of a modality absent from a
  process's share get no gradient there.
- Loss values, validation sums and the stopping decision are combined across processes; process
  0 decides when to stop and broadcasts it, writes checkpoints and (in the CLI) the outputs.
"""

from __future__ import annotations

import atexit
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a data-parallel run (a single process by default)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """More than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """This is process 0, which decides, logs and writes."""
        return self.rank == 0


def from_environment() -> Distributed:
    """This process's place: the initialised process group, else torchrun's variables."""
    if dist.is_available() and dist.is_initialized():
        return Distributed(
            dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
        )
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Distributed()
    return Distributed(_env_int("RANK", 0), world, _env_int("LOCAL_RANK", 0))


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"environment variable {name}={value!r}: expected an integer (torchrun sets it)."
        ) from None


def process_device(device: torch.device, ctx: Distributed) -> torch.device:
    """The device of this process: ``cuda`` means the GPU of its local rank in a parallel run."""
    if device.type == "cuda" and device.index is None and ctx.enabled:
        if ctx.local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"process {ctx.rank} has LOCAL_RANK={ctx.local_rank} but this node has "
                f"{torch.cuda.device_count()} CUDA GPU(s); start at most one process per GPU "
                "(torchrun --nproc_per_node=<number of GPUs>)."
            )
        device = torch.device("cuda", ctx.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def init_process_group(ctx: Distributed, device: torch.device) -> None:
    """Join the process group (``env://``) unless there is nothing to join or it is joined."""
    if not ctx.enabled or dist.is_initialized():
        return
    if not dist.is_available():
        raise RuntimeError(
            "WORLD_SIZE > 1 asks for data-parallel training, but this torch build has no "
            "torch.distributed support."
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method="env://")
    atexit.register(_leave)
    logger.info(
        "data-parallel training: process %d of %d (%s, %s)",
        ctx.rank,
        ctx.world_size,
        backend,
        device,
    )


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class LossForward(nn.Module):
    """The module's loss as ``forward``: DDP synchronises gradients through ``forward`` calls."""

    def __init__(self, module: nn.Module, weights) -> None:
        super().__init__()
        self.module = module
        self.weights = weights

    def forward(self, batch):
        return self.module.loss(batch, self.weights)


def wrap(module: nn.Module, weights, ctx: Distributed, device: torch.device) -> nn.Module:
    """``module.loss`` as a callable module: wrapped in DDP in a parallel run."""
    objective = LossForward(module, weights)
    if not ctx.enabled:
        return objective
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        objective, device_ids=ids, find_unused_parameters=True
    )


def sum_across(values: torch.Tensor, ctx: Distributed) -> torch.Tensor:
    """Element-wise sum of ``values`` (float64, any device) over all processes."""
    if ctx.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def from_main(values: torch.Tensor, ctx: Distributed) -> torch.Tensor:
    """Process 0's ``values`` on every process (in place)."""
    if ctx.enabled:
        dist.broadcast(values, src=0)
    return values


def copy_buffers_from_main(module: nn.Module, ctx: Distributed) -> None:
    """Give every process process 0's buffers (batch-norm running statistics)."""
    if ctx.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def gather_rng_states(ctx: Distributed, device: torch.device) -> torch.Tensor | None:
    """Every process's torch CPU generator state, (world_size, n) uint8 on CPU, or None alone.

    ``device`` is where the collective runs (NCCL needs CUDA tensors).
    """
    if not ctx.enabled:
        return None
    state = torch.get_rng_state().to(device)
    out = [torch.empty_like(state) for _ in range(ctx.world_size)]
    dist.all_gather(out, state)
    return torch.stack(out).cpu()
