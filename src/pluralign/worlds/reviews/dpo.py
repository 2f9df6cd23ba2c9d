"""DPO on the demo world: both dimensions' pairs merged (the single-model baseline of SPO and MODPO)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pluralign.methods.dpo.trainer import train_dpo
from pluralign.training.dpo_stage import DimensionDPOConfig

DEMO_PAIRS = 768  # per dimension


def demo_settings(world: Any) -> dict[str, Any]:
    """DPO settings the demo's DPO-family methods share (tiny model, CPU, a few minutes)."""
    return dict(
        model_name_or_path=world.base_model,
        learning_rate=1e-4,  # 5e-4 degenerates the tiny model's generations (benchmarks/spo_retention.py)
        lr_scheduler_type="cosine",
        warmup_steps=5,
        per_device_train_batch_size=16,
        num_train_epochs=1.0,
        beta=0.1,
        max_length=160,
        logging_steps=20,
        save_steps=20,
        save_total_limit=1,
        gradient_checkpointing=False,
        disable_tqdm=True,
        report_to="none",
        seed=world.settings.seed,
    )


def train_on_demo(world: Any, output_dir: Path, progress: Callable[[str], None] | None = print) -> Path:
    config = DimensionDPOConfig(output_dir=str(output_dir), **demo_settings(world))
    pairs = {name: world.pairs(name, DEMO_PAIRS) for name in world.objectives.names}
    return train_dpo(config, pairs, progress)
