"""RiC on the demo world: offline SFT on reward-tagged prompts plus one online MORS iteration."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pluralign.methods.ric.config import RiCConfig
from pluralign.methods.ric.trainer import train_ric
from pluralign.worlds.reviews.world import DemoWorld


def demo_config(world: DemoWorld, output_dir: Path, **overrides: Any) -> RiCConfig:
    """The demo's RiC settings; ``overrides`` set config fields (e.g. num_train_epochs)."""
    data = output_dir / "train.jsonl"
    output_dir.mkdir(parents=True, exist_ok=True)
    if not data.is_file():
        data.write_text(
            "".join(json.dumps({"prompt": s["prompt"], "response": s["response"]}) + "\n" for s in world.train)
        )
    settings: dict[str, Any] = dict(
        output_dir=str(output_dir),
        model_name_or_path=world.base_model,
        dataset=str(data),
        objective=world.objectives.specs(),
        response_marker=None,
        num_train_epochs=3.0,
        learning_rate=2e-3,
        lr_scheduler_type="cosine",
        warmup_steps=10,
        per_device_train_batch_size=32,
        max_length=160,
        online_iterations=1,
        online_prompts=600,
        online_offline_samples=1500,
        online_learning_rate=5e-4,
        online_epochs=1.0,
        online_max_new_tokens=world.generation_kwargs["max_new_tokens"],
        generation_batch_size=64,
        logging_steps=50,
        save_steps=100,
        save_total_limit=1,
        disable_tqdm=True,
        activation_checkpointing=False,  # TRL turns it on by default; a tiny CPU model only pays for it
        report_to="none",
        seed=world.settings.seed,
    )
    return RiCConfig(**{**settings, **overrides})


def train_on_demo(
    world: DemoWorld,
    output_dir: Path,
    progress: Callable[[str], None] | None = print,
    callbacks: Sequence[Any] | None = None,
    **overrides: Any,
) -> Path:
    """Train RiC on the demo world; ``callbacks`` go to every SFT trainer, ``overrides`` to the config."""
    return train_ric(demo_config(world, Path(output_dir), **overrides), progress=progress, callbacks=callbacks)
