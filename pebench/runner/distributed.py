"""torchrun: each process joins the process group (gloo on CPU, nccl on CUDA), streams a disjoint share
of the file list, and the counts are all-reduced (:func:`pebench.measure.evaluate.run_pass`), so the
accuracy equals one process's; only rank 0 writes records."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from pebench.errors import PebenchError


def under_torchrun() -> bool:
    return "MASTER_ADDR" in os.environ and "RANK" in os.environ


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun (even alone, so that a
    one-GPU torchrun exercises the same nccl path as eight)."""
    if not under_torchrun():
        return 0, 1
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if device.type == "cuda":
        local_rank, visible = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if local_rank >= visible:
            raise PebenchError(f"torchrun started process {local_rank} on a machine with {visible} visible GPU(s); "
                               f"each process needs its own GPU: use --nproc-per-node {visible} (or fewer)")
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank))
    else:
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def leave_distributed() -> None:
    """Leave the process group at the end of a command, as torch.distributed asks."""
    if under_torchrun() and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()
