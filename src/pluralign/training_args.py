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


class LoraMixin:
    """``peft_config()`` from a config's ``use_peft`` / ``lora_*`` fields (each config declares them with
    its own defaults); ``peft_task_type`` says what PEFT wraps (``SEQ_CLS`` keeps a classifier's head trainable)."""

    peft_task_type = "CAUSAL_LM"

    def peft_config(self):
        """The LoRA config when ``use_peft`` is set, else None."""
        if not getattr(self, "use_peft", False):
            return None
        from pluralign.sft import lora_config

        return lora_config(
            self.lora_r,
            self.lora_alpha,
            self.lora_dropout,
            getattr(self, "lora_target_modules", None),
            task_type=self.peft_task_type,
        )


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
