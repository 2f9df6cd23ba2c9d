"""Options of ``pluralign train reward-model --type classifier``: TRL's RewardConfig plus data and LoRA."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import RewardConfig

from pluralign.errors import ConfigError
from pluralign.models.encoder_pooling import POOLINGS
from pluralign.training.args import DevicePrecisionMixin, LoraMixin

HEAD_ONLY_ABOVE_BLOCKS = 2  # --trainable_layers unset: the head alone on cached features for a backbone this deep


@dataclass
class ClassifierRewardConfig(DevicePrecisionMixin, LoraMixin, RewardConfig):
    """Fine-tune a pretrained model (default: the bundled all-MiniLM-L6-v2) as a Bradley-Terry reward model.

    The data is any preference-pair file (TRL's formats, :mod:`pluralign.data.pairs`); ``eval_fraction`` of
    the pairs (by pair id) is held out and its pairwise accuracy written into the model directory. Over
    ``max_length`` tokens the oldest prompt tokens are dropped, never the response (:mod:`pluralign.models.truncation`).

    The head reads an encoder (the bundled MiniLM) by the attention-masked mean of block ``pooling_layer``'s
    token states (the blocks above are dropped; default: block 4 of MiniLM's 6, measured), a causal LM at its
    last real token (:mod:`pluralign.models.encoder_pooling`).

    What trains: the head alone, fitted on the frozen model's pooled features computed once and cached
    (``trainable_layers`` 0, the default for a backbone deeper than 2 blocks: :mod:`pluralign.models.frozen_layers`),
    the top N blocks + the head on the frozen blocks' hidden states (``N``), the whole model (``-1``), or
    LoRA adapters + the head (``use_peft``).
    """

    dataset: str | None = field(default=None, metadata={"help": "pairs: hub id or local jsonl/json/parquet/csv"})
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "backbone: folder, hub id or builtin:all-minilm-l6-v2 (default: the bundled MiniLM)"},
    )
    objective_name: str = field(default="reward", metadata={"help": "the name the score goes by (pluralign.json)"})
    prompt_column: str = "prompt"
    eval_fraction: float = field(default=0.1, metadata={"help": "share of the pairs held out (by pair id)"})
    skip_invalid_pairs: bool = field(
        default=False, metadata={"help": "drop pairs with an empty response or identical responses (else an error)"}
    )
    max_pairs: int | None = field(default=None, metadata={"help": "use at most this many pairs"})
    use_peft: bool = field(default=False, metadata={"help": "train LoRA adapters (merged into the saved model)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: list[str] | None = field(default=None, metadata={"help": "LoRA target modules (auto)"})
    trainable_layers: int | None = field(
        default=None,
        metadata={
            "help": "train only the top N blocks + head on cached hidden states of the frozen blocks below; "
            "0 = the head alone on cached pooled features; -1 = the whole model; unset = the head alone when "
            f"the backbone has more than {HEAD_ONLY_ABOVE_BLOCKS} blocks (measured: docs/reward_models.md), else "
            "the whole model (LoRA on the whole model with --use_peft)"
        },
    )
    feature_cache: str | None = field(
        default=None,
        metadata={"help": "folder of the frozen part's cached outputs (default: OUTPUT_DIR/feature_cache, "
                  "removed once the model is saved; a folder you name is kept and reused)"},
    )  # fmt: skip
    head_l2: float | None = field(
        default=None,
        metadata={"help": "--trainable_layers 0: L2 penalty of the head on standardised features "
                  "(default: chosen by 5-fold cross-validation on the training pairs)"},
    )  # fmt: skip
    pooling: str = field(
        default="auto",
        metadata={"help": "what the head reads: auto (an encoder: mean; a causal LM: model), mean (the "
                  "attention-masked mean of the token states), model (the model's own: BERT's [CLS] pooler, "
                  "a causal LM's last real token)"},
    )  # fmt: skip
    pooling_layer: int | None = field(
        default=None,
        metadata={"help": "the block whose output the head reads (1..L, -1 the last); the blocks above are "
                  "dropped from the model. Default: 4 for the bundled all-MiniLM-L6-v2 (measured: "
                  "docs/reward_models.md), the last for any other backbone"},
    )  # fmt: skip
    use_chat_template: bool | None = field(
        default=None,
        metadata={"help": "render the dialogue with the backbone's chat template (default: when it has one)"},
    )
    validation_fraction: float = field(
        default=0.0,
        metadata={"help": "share of the training pairs (by pair) held back to keep the best checkpoint "
                  "and stop early (eval every --save_steps)"},
    )  # fmt: skip
    early_stopping_patience: int = field(
        default=3, metadata={"help": "with --validation_fraction: evaluations without improvement before stopping"}
    )

    # RewardConfig / TrainingArguments defaults that suit a small encoder on a CPU
    max_length: int | None = field(default=256, metadata={"help": "tokens per (prompt, response); prompt cut first"})
    # for RewardTrainer runs (--trainable_layers -1 or N, --use_peft): the whole MiniLM at 1e-4 for 2 epochs
    # reached 0.668 on one split of the shipped HH pairs; 3e-5 under-fits (0.593)
    learning_rate: float = 1e-4
    num_train_epochs: float = 2.0
    per_device_train_batch_size: int = 16
    per_device_eval_batch_size: int = 64
    train_sampling_strategy: str = "group_by_length"  # batches of similar lengths: little padding is computed
    activation_checkpointing: bool | None = False  # TRL turns it on; a small encoder on a CPU only pays for it
    lr_scheduler_type: str = "linear"
    warmup_steps: float = 0.1
    logging_steps: float = 10
    save_strategy: str = "steps"
    save_steps: float = 50
    save_total_limit: int | None = 2
    disable_tqdm: bool = True

    peft_task_type = "SEQ_CLS"  # LoRA on a sequence classifier: its score head stays trainable

    def __post_init__(self) -> None:
        if self.output_dir is None:
            raise ConfigError("--output_dir is required: the folder that will hold the reward model")
        if not 0.0 <= self.eval_fraction < 0.9:
            raise ConfigError(f"--eval_fraction must be in [0, 0.9), got {self.eval_fraction}")
        if not self.max_length or self.max_length < 8:
            raise ConfigError(f"--max_length must be at least 8 tokens, got {self.max_length}")
        if self.trainable_layers is not None and self.trainable_layers < -1:
            raise ConfigError(
                f"--trainable_layers must be -1 (whole model), 0 (head only) or more, got {self.trainable_layers}"
            )
        if self.trainable_layers not in (None, -1) and self.use_peft:
            raise ConfigError("--trainable_layers and --use_peft are two ways to train part of a model; pick one")
        if not 0.0 <= self.validation_fraction < 0.9:
            raise ConfigError(f"--validation_fraction must be in [0, 0.9), got {self.validation_fraction}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"--pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}")
        if self.pooling_layer == 0:
            raise ConfigError("--pooling_layer 0 is the embeddings, not a block; use 1..L, or -1 for the last")
        super().__post_init__()
