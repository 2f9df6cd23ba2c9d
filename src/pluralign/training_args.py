"""Defaults shared by every TRL-based config in pluralign.

TRL turns ``bf16=None`` into ``bf16=True``, which transformers rejects on a machine without a GPU.
:class:`DevicePrecisionMixin` keeps TRL's default on GPUs and makes it fp32 elsewhere; an explicit
``bf16: true`` from the user is left as given.
"""

from __future__ import annotations

import torch


def gpu_available() -> bool:
    return torch.cuda.is_available()


def process_state():
    """accelerate's process state; on machines without a GPU it uses gloo, so ``accelerate launch
    --multi_gpu --num_processes N`` (torchrun) runs N CPU processes (DistributedType.MULTI_CPU)."""
    from accelerate import PartialState

    return PartialState(cpu=not gpu_available())


class DevicePrecisionMixin:
    """Mix in before the TRL config class: ``class MyConfig(DevicePrecisionMixin, DPOConfig)``.

    Without a GPU: fp32 unless bf16 was asked for, and ``use_cpu`` so that several processes started by
    ``accelerate launch`` join one gloo process group.
    """

    def __post_init__(self) -> None:
        if not gpu_available():
            if getattr(self, "bf16", None) is None:
                self.bf16 = False
            self.use_cpu = True
            process_state()
        super().__post_init__()
