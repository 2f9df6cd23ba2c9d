"""The two RL baselines (MORLHF, Rewarded Soups) on the reviews world: the same settings and prompts for both."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pluralign.training.rl import demo_rl_config, world_prompts


def train_rl_on_world(
    config_class: type,
    train: Callable[..., Path],
    world: Any,
    output_dir: Path,
    progress: Callable[[str], None] = print,
    callbacks: Sequence[Any] | None = None,
    **overrides: Any,
) -> Path:
    """Train one RL baseline on the demo world (``DEMO_RL_SETTINGS``); ``overrides`` set config fields."""
    config = demo_rl_config(config_class, world, Path(output_dir), **overrides)
    return train(config, world.objectives, world_prompts(world), progress, callbacks=callbacks)
