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
from pluralign.models.manifest import Manifest
from pluralign.objectives.set import ObjectiveSet
from pluralign.training.rl import save_runs_model, train_runs


def train_soups(
    config: SoupsConfig,
    objectives: ObjectiveSet,
    prompts: Sequence[Any],
    progress: Callable[[str], None] = print,
    callbacks: Sequence[Any] | None = None,
) -> Path:
    """Train one policy per objective and write the Soups model directory (``config.output_dir``)."""
    k = len(objectives)
    runs = [(name, name, [1.0 if j == i else 0.0 for j in range(k)]) for i, name in enumerate(objectives.names)]
    start, tokenizer, out = train_runs(config, objectives, prompts, runs, "soups", progress, callbacks)
    extra = {
        "runs": {name: f"runs/{name}" for name in objectives.names},
        "trainer": "rloo",
        "max_steps": config.max_steps,
        "peft": bool(config.use_peft),
    }
    manifest = Manifest.for_objectives("soups", objectives, mapping="weight_average", base_model=start, extra=extra)
    return save_runs_model(out, tokenizer, manifest)
