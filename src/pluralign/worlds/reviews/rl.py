"""Shared settings of the two RL baselines (MORLHF, Rewarded Soups) on the reviews world."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pluralign.data.loading import unique_prompts


def demo_rl_config(config_class: type, world: Any, output_dir: str | Path, **overrides: Any) -> Any:
    """A baseline's config on a demo world: ``DEMO_RL_SETTINGS``, the world's completion length, then ``overrides``."""
    settings = {
        **DEMO_RL_SETTINGS,
        "max_completion_length": int(world.generation_kwargs.get("max_new_tokens", 32)),
        **overrides,
    }
    return config_class(output_dir=str(output_dir), model_name_or_path=world.base_model, **settings)


def world_prompts(world: Any) -> list[Any]:
    """The distinct training prompts of a demo world."""
    return unique_prompts([s["prompt"] for s in world.train])


# RL settings of the demo world, shared by MORLHF and Soups so both spend the same steps per run.
DEMO_RL_SETTINGS: dict[str, Any] = {
    "max_steps": 20,
    "per_device_train_batch_size": 16,
    "num_generations": 4,
    "learning_rate": 1e-4,
    "beta": 0.05,
    "temperature": 1.0,
    "logging_steps": 10,
    "disable_tqdm": True,
    "activation_checkpointing": False,  # TRL's default (on) only costs time on a tiny CPU model; RiC's demo has it off
    "save_strategy": "no",
    "report_to": [],
    "seed": 0,
}
