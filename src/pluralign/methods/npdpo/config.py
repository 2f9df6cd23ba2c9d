"""NPDPOConfig: TRL's DPOConfig plus the users' data, the context features and the NP modules' sizes."""

from __future__ import annotations

from dataclasses import dataclass, field

import trl

from pluralign.errors import ConfigError
from pluralign.models.embeddings import DEFAULT_ENCODER
from pluralign.training.args import DevicePrecisionMixin, LoraMixin


@dataclass
class NPDPOConfig(DevicePrecisionMixin, LoraMixin, trl.DPOConfig):
    """Options of ``pluralign train npdpo`` (METHODS.md §5).

    Each training row is one target pair of a user type plus a context of k other pairs of the same
    type (k uniform in min_context..max_context, ``contexts_per_pair`` draws per pair). The policy is
    FiLM-conditioned on z = context_encoder(context); the reference is the unconditioned starting model.
    """

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "starting (SFT) causal LM: folder or hub id"}
    )
    dataset: str | None = field(default=None, metadata={"help": "pairs by attribute/user, or per-attribute ratings"})
    format: str = field(default="auto", metadata={"help": "auto | ultrafeedback | pairwise_ids | ratings | pairs"})
    attributes: list[str] = field(default_factory=list, metadata={"help": "user types (attributes) to keep"})
    conflicting_only: bool = field(default=False, metadata={"help": "keep only pairs the attributes disagree on"})
    prompt_column: str = "prompt"
    max_pairs_per_type: int | None = field(default=None, metadata={"help": "keep at most this many pairs per type"})
    min_context: int = field(default=0, metadata={"help": "smallest context size k in training"})
    max_context: int = field(default=10, metadata={"help": "largest context size k in training"})
    contexts_per_pair: int = field(default=1, metadata={"help": "training rows (context draws) per target pair"})
    context_bank_size: int = field(
        default=10, metadata={"help": "example choices per user type stored with the model (preference steering)"}
    )
    embedding_model: str = field(default=DEFAULT_ENCODER, metadata={"help": "encoder for the context's features"})
    embedding_pooling: str = field(default="auto", metadata={"help": "auto | mean | last"})
    embedding_cache: str | None = field(default=None, metadata={"help": "embedding cache folder"})
    embedding_max_length: int = 256
    np_hidden_dim: int = field(default=256, metadata={"help": "context encoder width = latent size"})
    np_num_heads: int = 8
    use_peft: bool = field(default=False, metadata={"help": "LoRA adapters on the LM (merged when saving)"})
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: list[str] | None = field(default=None, metadata={"help": "default: q/v projections"})
    beta: float = field(default=0.05, metadata={"help": "DPO beta (the NP-DPO paper: 0.05)"})
    learning_rate: float = field(default=1e-4, metadata={"help": "learning rate of the LM (LoRA), FiLM and encoder"})
    np_learning_rate: float | None = field(
        default=None, metadata={"help": "learning rate of the context encoder and FiLM (default: learning_rate)"}
    )
    precompute_ref_log_probs: bool = field(
        default=True, metadata={"help": "reference log-probs once before training (the reference is unconditioned)"}
    )
    save_strategy: str = field(default="no", metadata={"help": "the final model is saved by pluralign"})
    logging_steps: float = 10

    def __post_init__(self) -> None:
        import torch

        if self.bf16 is None and not self.fp16 and not torch.cuda.is_available():
            self.bf16 = False  # TRL defaults to bf16, which is slow or missing on CPUs
        if not 0 <= self.min_context <= self.max_context:
            raise ConfigError("--min_context and --max_context must satisfy 0 <= min_context <= max_context")
        if self.gradient_checkpointing and (self.gradient_checkpointing_kwargs or {}).get("use_reentrant"):
            # z reaches the blocks outside the checkpoint's inputs: a reentrant checkpoint cannot carry its
            # gradient back to the context encoder (methods/npdpo/film.py)
            raise ConfigError(
                "NP-DPO needs gradient_checkpointing_kwargs use_reentrant: false (FiLM's z is not a checkpoint "
                "input); drop use_reentrant or turn gradient_checkpointing off"
            )
        super().__post_init__()

    def require(self) -> None:
        if not self.model_name_or_path:
            raise ConfigError("--model_name_or_path is required: the starting (SFT) causal LM folder or hub id")
        if not self.dataset:
            raise ConfigError("--dataset is required: pairs with an 'attribute' column, or per-attribute ratings")
