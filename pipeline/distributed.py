"""Data-parallel plumbing: the process group that `torchrun` describes, and a few collectives.

`torchrun` tells each worker its place through the environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, ...); this module is the one place below the CLI that reads it. Gloo serves CPU
runs, NCCL GPU runs. Every collective here is a no-op in a single process, so the trainer calls
them unconditionally.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    """This worker's place in the job: rank among world_size processes, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str) -> str:
    """`auto` becomes `cuda` when a GPU is visible, else `cpu`; other names pass through."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def init(device: str = "cpu") -> Context:
    """Join the process group `torchrun` set up (if WORLD_SIZE > 1) and pick this rank's device.

    Args:
        device: `cpu`, `cuda` or `auto`; under several processes on GPU, rank r of a node uses
            `cuda:<local rank>`.

    Returns:
        The worker's Context. Calling it again reuses the existing group.
    """
    device = resolve_device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda") and world_size > 1:
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return Context(rank, world_size, local_rank, torch.device(device))


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over all ranks in place (and return it)."""
    if is_active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (small picklable objects only: they travel by pickle)."""
    if not is_active():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    if is_active():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (at the end of a stage), if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def bf16_pays(device: torch.device) -> bool:
    """Whether bf16 autocast speeds this device up: any bf16-capable GPU; on CPU only with native
    bf16 instructions (AVX512-BF16 or AMX), without which it is several times slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    if not native:
        LOG.warning("precision bf16 asked for, but this CPU has no native bf16: training in fp32")
    return native
