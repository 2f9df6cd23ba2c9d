"""RiCConfig: TRL's SFTConfig plus what Rewards-in-Context adds (data, objectives, tags, online MORS)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import SFTConfig

from pluralign.training.args import DevicePrecisionMixin, LoraMixin


@dataclass
class RiCConfig(DevicePrecisionMixin, LoraMixin, SFTConfig):
    """Options of ``pluralign train ric``; every SFTConfig option applies to the offline stage."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "Starting (SFT) model: folder or hub id."})
    dataset: str | None = field(default=None, metadata={"help": "Dataset: hub id or local jsonl/json/parquet/csv."})
    dataset_split: str = field(default="train", metadata={"help": "Split to load from a hub dataset."})
    prompt_column: str = field(default="prompt", metadata={"help": "Column with the prompt."})
    response_column: str | None = field(default=None, metadata={"help": "Column with the response (auto)."})
    response_marker: str | None = field(
        default="\n\nAssistant:", metadata={"help": "Assistant-turn marker: tags go before it; dialogues split at it."}
    )
    max_samples: int | None = field(default=None, metadata={"help": "Use at most this many samples (debugging)."})
    objective: list[str] = field(
        default_factory=list,
        metadata={"help": "Objective spec, repeatable: sentiment | name=org/rm | name=module:fn (YAML: dicts)."},
    )
    score_batch_size: int = field(default=256, metadata={"help": "Pairs per scoring chunk (committed to the cache)."})
    tag_format: str = field(default="<{name}> {value:.1f}", metadata={"help": "Format of one reward tag."})
    tag_separator: str = field(default=" ", metadata={"help": "Text between tags."})
    tag_position: str = field(
        default="prompt_end",
        metadata={
            "help": "prompt_end: tags before the response marker (the paper) | response_start: on a line right "
            "after it, at the start of the assistant's turn (text prompts)."
        },
    )
    tag_levels: int = field(
        default=0,
        metadata={
            "help": "0: tags show z-scored rewards (the paper); N >= 2: each reward's quantile level 0..N-1 "
            "among the offline data (same order, no signs, every value equally common)."
        },
    )
    center_rewards: str = field(
        default="none",
        metadata={
            "help": "none: tags show each sample's rewards (the paper) | prompt: minus the mean over the offline "
            "responses to its prompt (a reward model trained on pairs fixes no per-prompt level; "
            "pluralign.methods.ric.centering)."
        },
    )
    mapping: str = field(default="linf", metadata={"help": "Preference-to-reward mapping: linf | l2 | linear | linf_mid."})
    floor_at_middle: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Objectives whose desired reward never goes below the middle of its bounds (repeatable): a "
            "weight of 0 asks for a typical level, not the lowest. For an objective whose worst samples are "
            "not what the others want (hh: the least helpful answers are off-topic questions, not refusals)."
        },
    )
    guidance_scale: float = field(
        default=1.0,
        metadata={
            "help": "Classifier-free guidance on the tags when the model generates (stored in pluralign.json; "
            "generate/serve may override): 1 plain decoding, > 1 amplifies what the tags change."
        },
    )
    guidance_against: str = field(
        default="opposite",
        metadata={
            "help": "The tags guidance steers away from: opposite (desired rewards reflected) | raised (only those "
            "above their middle reflected: nothing is pushed down) | neutral (every reward at its middle)."
        },
    )
    # LoRA (the paper: r=64, alpha=128, dropout=0.05)
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of full weights."})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=128, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(default=None, metadata={"help": "LoRA target modules (auto)."})
    # online multi-objective rejection sampling (MORS)
    online_iterations: int = field(default=2, metadata={"help": "Online MORS iterations (the paper: 2)."})
    online_prompts: int = field(default=512, metadata={"help": "Prompts sampled per online iteration."})
    reward_bounds: str = field(
        default="data",
        metadata={
            "help": "Bounds of desired z-rewards online and at inference: data (training z min/max) | "
            "gaussian (the reference's min/max of N(0,1) draws, about -4.3..4.3). Stored in pluralign.json."
        },
    )
    online_low: float | None = field(default=None, metadata={"help": "Override the lower bound of desired z-rewards."})
    online_high: float | None = field(default=None, metadata={"help": "Override the upper bound of desired z-rewards."})
    online_quantile: float = field(default=0.7, metadata={"help": "MORS threshold quantile per objective."})
    online_offline_samples: int = field(default=10000, metadata={"help": "Filtered offline samples in the buffer."})
    online_learning_rate: float = field(default=1e-5, metadata={"help": "Learning rate of online SFT (constant)."})
    online_epochs: float = field(default=1.0, metadata={"help": "Epochs over the buffer per online iteration."})
    online_max_steps: int = field(
        default=-1, metadata={"help": "Optimiser steps per online iteration (> 0 overrides online_epochs; paper: 4000)."}
    )
    online_max_new_tokens: int = field(default=128, metadata={"help": "New tokens per online generation."})
    online_top_p: float = field(default=0.9, metadata={"help": "top_p of online generation."})
    online_top_k: int = field(
        default=0, metadata={"help": "top_k of online generation; 0: off, pure top-p sampling (the reference)."}
    )
    online_temperature: float = field(default=0.7, metadata={"help": "Temperature of online generation."})
    clean_generations: bool = field(
        default=True,
        metadata={"help": "Cut online generations at the next turn, no EOS first, drop degenerate ones (reference)."},
    )
    generation_batch_size: int = field(default=32, metadata={"help": "Prompts per generate call."})
    generation_backend: str = field(
        default="transformers",
        metadata={"help": "online generation: transformers | continuous (transformers' continuous batching) | vllm"},
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow remote code in models (off by default)."})
