"""Model and LoRA arguments shared by every trainer config, TRL-style (like TRL's ``ModelConfig``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pluralign.models.state import gpu_available, process_state


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
        return lora_config(
            self.lora_r,
            self.lora_alpha,
            self.lora_dropout,
            getattr(self, "lora_target_modules", None),
            task_type=self.peft_task_type,
        )


def lora_config(
    r: int = 64,
    alpha: int = 128,
    dropout: float = 0.05,
    target_modules: Sequence[str] | None = None,
    task_type: str = "CAUSAL_LM",
):
    """PEFT's LoraConfig (``target_modules=None``: PEFT's defaults for the model type)."""
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules) if target_modules else None,
        task_type=task_type,
    )


def precision_for_device(values: dict[str, Any]) -> dict[str, Any]:
    """TRL defaults to bf16, which machines without a GPU reject: fall back to fp32 there."""
    from pluralign.models.state import gpu_available

    if gpu_available() or values.get("bf16"):
        return {}
    return {"bf16": False, "use_cpu": True}
