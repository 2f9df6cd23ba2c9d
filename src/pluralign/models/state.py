"""Process state: the device, the main process, and sharing work between the processes of ``accelerate
launch`` (scoring, front evaluation, generation). ``is_main_process`` is the one "am I the main process" test.

Everything here is a no-op for a single process. Under several processes, rows are dealt round-robin
(``rows[rank::world]``) so each process gets an even share, and results are gathered back in the input
order; objects travel through ``torch.distributed``'s object collectives (gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group, ``(0, 1)`` without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_processes() -> tuple[int, int]:
    """Join ``accelerate launch``'s process group when launched by it (commands that train nothing call it)."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        process_state()
    return world()


def my_share(rows: Sequence[T]) -> list[T]:
    """This process's rows: every ``world``-th row starting at ``rank``."""
    rank, size = world()
    return list(rows[rank::size])


def gather_shares(mine: Sequence[T], total: int) -> list[T]:
    """Inverse of :func:`my_share`: every process gets all ``total`` rows back in the original order."""
    rank, size = world()
    if size == 1:
        return list(mine)
    import torch.distributed as dist

    parts: list[Any] = [None] * size
    dist.all_gather_object(parts, list(mine))
    out: list[Any] = [None] * total
    for r, part in enumerate(parts):
        out[r::size] = part
    return out


def all_gather(value: T) -> list[T]:
    """``[value of rank 0, value of rank 1, ...]`` on every process."""
    rank, size = world()
    if size == 1:
        return [value]
    import torch.distributed as dist

    parts: list[Any] = [None] * size
    dist.all_gather_object(parts, value)
    return parts


def broadcast(value: T) -> T:
    """The main process's ``value`` on every process."""
    rank, size = world()
    if size == 1:
        return value
    import torch.distributed as dist

    box = [value if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gpu_available() -> bool:
    return torch.cuda.is_available()


def process_state():
    """accelerate's process state; on machines without a GPU it uses gloo, so ``accelerate launch
    --multi_gpu --num_processes N`` (torchrun) runs N CPU processes (DistributedType.MULTI_CPU)."""
    from accelerate import PartialState

    return PartialState(cpu=not gpu_available())






def is_main_process() -> bool:
    """True on the process that writes results (the only one when not launched by accelerate)."""
    return process_state().is_main_process


def wait_for_everyone() -> None:
    """Barrier across ``accelerate launch``'s processes (a no-op for one process)."""
    process_state().wait_for_everyone()


def shared_dataset(rows: list[dict], folder):
    """``Dataset.from_list(rows)``; with several processes, backed by files in ``folder`` written by the main one.

    TRL caches precomputed columns (DPO's reference log-probabilities) next to a dataset's files; an
    in-memory dataset puts them in a per-process temporary folder the other processes cannot read.
    """
    from datasets import Dataset, load_from_disk

    dataset = Dataset.from_list(rows)
    if process_state().num_processes == 1:
        return dataset
    if is_main_process():
        dataset.save_to_disk(str(folder))
    wait_for_everyone()
    return load_from_disk(str(folder))
