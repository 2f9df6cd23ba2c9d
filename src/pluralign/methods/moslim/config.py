"""Options of ``pluralign train moslim``: MOSLIM's own fields on top of the TRL config of the chosen algorithm.

:class:`MoslimArguments` holds the method's fields; :class:`MoslimGRPOConfig`, :class:`MoslimRLOOConfig`
and :class:`MoslimOnlineDPOConfig` extend TRL's ``GRPOConfig``, ``RLOOConfig`` and (experimental)
``OnlineDPOConfig`` with them. ``--algorithm`` picks one (:func:`config_class`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig, RLOOConfig

from pluralign.errors import ConfigError
from pluralign.methods.moslim.mapping import LEVEL_MAPPINGS, STATS_MODES, ZERO_WEIGHT
from pluralign.training.args import DevicePrecisionMixin, LoraMixin

ALGORITHMS = ("grpo", "rloo", "online_dpo")


@dataclass
class MoslimArguments(LoraMixin):
    """What MOSLIM adds to a scalar-reward RL trainer (METHODS.md §2)."""

    algorithm: str = field(default="grpo", metadata={"help": "policy optimiser: grpo | rloo | online_dpo"})
    model_name_or_path: str | None = field(default=None, metadata={"help": "starting policy (any causal LM)"})
    reward_model: str | None = field(
        default=None, metadata={"help": "multi-head reward model dir (pluralign train reward-model --type multihead)"}
    )
    dataset: str | None = field(default=None, metadata={"help": "prompts: hub id or local jsonl/json/parquet/csv"})
    prompt_column: str = field(default="prompt", metadata={"help": "dataset column holding the prompt"})
    max_prompts: int | None = field(default=None, metadata={"help": "use at most this many distinct prompts"})
    preferences_per_prompt: int = field(
        default=4, metadata={"help": "training rows per prompt, each with freshly sampled intensities and mask"}
    )
    unspecified_probability: float = field(
        default=0.25, metadata={"help": "chance that an objective is left unspecified (masked) in a training prompt"}
    )
    target_sampling: str = field(
        default="uniform",
        metadata={"help": "intensities per training prompt: uniform (independent levels) | preference (w ~ simplex)"},
    )
    template: str | None = field(
        default=None,
        metadata={"help": "preference block with one {objective} slot each (default ' [a={a} b={b}]')"},
    )
    level_format: str = field(default="{level}/{max}", metadata={"help": "how a slot shows an intensity"})
    level_names: str | None = field(
        default=None,
        metadata={
            "help": 'JSON {objective: [one word per class]} shown instead of level_format, e.g. {"tone": ["cold", "warm"]}'
        },
    )
    unspecified: str = field(default="any", metadata={"help": "what a slot shows for an unspecified objective"})
    response_marker: str | None = field(
        default="\n\nAssistant:", metadata={"help": "insert the block before this marker when a prompt ends with it"}
    )
    stats: str = field(
        default="head", metadata={"help": "reward normalisation: head (RM class statistics) | batch (running) | none"}
    )
    preference_mapping: str = field(
        default="linear", metadata={"help": "preference weights -> intensities at inference: linear | linf | l2"}
    )
    zero_weight: str = field(
        default="unspecified",
        metadata={"help": "a preference weight of 0 at inference: unspecified (masked) | lowest (lowest level)"},
    )
    use_peft: bool = field(default=False, metadata={"help": "train LoRA adapters instead of all weights"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "LoRA target modules (default: PEFT's for the model type)"}
    )

    def check_moslim(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"algorithm {self.algorithm!r} is not one of {', '.join(ALGORITHMS)}")
        if self.stats not in STATS_MODES:
            raise ConfigError(f"stats {self.stats!r} is not one of {', '.join(STATS_MODES)}")
        if self.preference_mapping not in LEVEL_MAPPINGS:
            raise ConfigError(
                f"preference_mapping {self.preference_mapping!r} is not one of {', '.join(LEVEL_MAPPINGS)}"
            )
        if not 0.0 <= self.unspecified_probability < 1.0:
            raise ConfigError(f"unspecified_probability must be in [0, 1), got {self.unspecified_probability}")
        if self.zero_weight not in ZERO_WEIGHT:
            raise ConfigError(f"zero_weight {self.zero_weight!r} is not one of {', '.join(ZERO_WEIGHT)}")
        if self.target_sampling not in ("uniform", "preference"):
            raise ConfigError(f"target_sampling {self.target_sampling!r} is not one of uniform, preference")
        self.level_names_dict()
        if self.preferences_per_prompt < 1:
            raise ConfigError("preferences_per_prompt must be >= 1")

    def level_names_dict(self) -> dict[str, list[str]] | None:
        """``level_names`` parsed (YAML may give a mapping directly, flags give JSON)."""
        import json

        if not self.level_names:
            return None
        if isinstance(self.level_names, dict):
            return {k: list(v) for k, v in self.level_names.items()}
        try:
            value = json.loads(self.level_names)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"level_names is not valid JSON: {exc.msg}") from exc
        if not isinstance(value, dict):
            raise ConfigError('level_names must be a JSON object, e.g. {"tone": ["cold", "warm"]}')
        return value


@dataclass
class MoslimGRPOConfig(DevicePrecisionMixin, GRPOConfig, MoslimArguments):
    """MOSLIM with TRL's GRPO (group-normalised advantages over ``num_generations`` samples per prompt)."""

    save_strategy: str = "no"

    def __post_init__(self) -> None:
        self.check_moslim()
        super().__post_init__()


@dataclass
class MoslimRLOOConfig(DevicePrecisionMixin, RLOOConfig, MoslimArguments):
    """MOSLIM with TRL's RLOO (leave-one-out baseline over ``num_generations`` samples per prompt)."""

    algorithm: str = "rloo"
    save_strategy: str = "no"

    def __post_init__(self) -> None:
        self.check_moslim()
        super().__post_init__()


def _online_dpo_config():
    from trl.experimental.online_dpo import OnlineDPOConfig

    @dataclass
    class MoslimOnlineDPOConfig(DevicePrecisionMixin, OnlineDPOConfig, MoslimArguments):
        """MOSLIM with TRL's (experimental) online DPO: two samples per prompt, the higher reward is chosen."""

        algorithm: str = "online_dpo"
        save_strategy: str = "no"

        def __post_init__(self) -> None:
            self.check_moslim()
            super().__post_init__()

    return MoslimOnlineDPOConfig


def config_class(algorithm: str) -> type:
    """The config dataclass for ``algorithm`` (online DPO is imported only when asked for)."""
    if algorithm == "grpo":
        return MoslimGRPOConfig
    if algorithm == "rloo":
        return MoslimRLOOConfig
    if algorithm == "online_dpo":
        return _online_dpo_config()
    raise ConfigError(f"algorithm {algorithm!r} is not one of {', '.join(ALGORITHMS)}")
