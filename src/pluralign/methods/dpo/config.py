"""Configuration of DPO on preference dimensions; SPO's and MODPO's configs extend it."""

from __future__ import annotations

from dataclasses import dataclass, field

import trl

from pluralign.errors import ConfigError
from pluralign.training_args import DevicePrecisionMixin, LoraMixin


@dataclass
class DimensionDPOConfig(DevicePrecisionMixin, LoraMixin, trl.DPOConfig):
    """TRL's DPOConfig plus where the starting model and each dimension's pairs come from.

    Reference log-probabilities are precomputed once per pair by default (so no reference model stays
    in memory during training), and on a machine without a GPU training runs in float32.
    """

    model_name_or_path: str | None = field(default=None, metadata={"help": "starting (SFT) model: folder or hub id"})
    dataset: list[str] = field(
        default_factory=list,
        metadata={"help": "PATH (PKU-SafeRLHF / HelpSteer-style ratings) or NAME=PATH (plain pairs of dimension NAME)"},
    )
    dimensions: list[str] = field(
        default_factory=list, metadata={"help": "dimensions to use, in order (default: as found in the datasets)"}
    )
    max_pairs: int | None = field(default=None, metadata={"help": "keep at most this many pairs per dimension"})
    min_rating_gap: float = field(default=1.0, metadata={"help": "ratings data: smallest rating gap that makes a pair"})
    use_peft: bool = field(
        default=False, metadata={"help": "train LoRA adapters (merged into full weights when each stage ends)"}
    )
    lora_r: int = field(default=64, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=128, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: list[str] | None = field(default=None, metadata={"help": "LoRA target modules (auto)"})
    precompute_ref_log_probs: bool = field(
        default=True, metadata={"help": "precompute reference log-probs once (no reference model kept in memory)"}
    )

    def __post_init__(self) -> None:
        import torch

        if self.bf16 is None and not self.fp16 and not torch.cuda.is_available():
            self.bf16 = False  # TRL defaults to bf16, which is slow or missing on CPUs
        super().__post_init__()

    def require_model(self) -> str:
        if not self.model_name_or_path:
            raise ConfigError("--model_name_or_path is required: the starting (SFT) model folder or hub id")
        from pluralign.builtin_models import resolve_model

        return resolve_model(self.model_name_or_path)
