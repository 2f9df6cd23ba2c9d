"""Training Rewarded Soups: one :func:`pluralign.training.rl.train_weighted_policy` run per objective.

The artifact is one directory: ``runs/<objective>/`` per objective (each trained on that objective's
z-score alone, from the same start), the tokenizer, and ``pluralign.json`` (``extra["runs"]`` maps each
objective to its run). Finished runs are skipped on a rerun.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pluralign.methods.soups.config import SoupsConfig
from pluralign.models.loading import load_tokenizer
from pluralign.objectives.set import ObjectiveSet
from pluralign.training.manifest import Manifest
from pluralign.training.rl import check_start_model, run_is_done, train_weighted_policy
from pluralign.training.state import is_main_process, wait_for_everyone


def train_soups(
    config: SoupsConfig,
    objectives: ObjectiveSet,
    prompts: Sequence[Any],
    progress: Callable[[str], None] = print,
    callbacks: Sequence[Any] | None = None,
) -> Path:
    """Train one policy per objective and write the Soups model directory (``config.output_dir``)."""
    start = check_start_model(config)
    out = Path(config.output_dir)
    tokenizer = load_tokenizer(start)
    runs = {}
    k = len(objectives)
    for i, name in enumerate(objectives.names):
        run_dir = out / "runs" / name
        if run_is_done(run_dir):
            progress(f"soups run {i + 1}/{k} ({name}): already trained, skipped")
        else:
            progress(f"soups run {i + 1}/{k} ({name}): RLOO for {config.max_steps} steps")
            one_hot = [1.0 if j == i else 0.0 for j in range(k)]
            train_weighted_policy(
                config, objectives, one_hot, prompts, run_dir, processing_class=tokenizer, callbacks=callbacks
            )
        runs[name] = str(run_dir.relative_to(out))
    if is_main_process():
        tokenizer.save_pretrained(str(out))
        Manifest(
            method="soups",
            objectives=objectives.names,
            stats=objectives.stats_dict(),
            objective_specs=objectives.specs(),
            mapping="weight_average",
            base_model=start,
            extra={"runs": runs, "trainer": "rloo", "max_steps": config.max_steps, "peft": bool(config.use_peft)},
        ).save(out)
    wait_for_everyone()
    return out
