"""Training MORLHF: one :func:`pluralign.training.rl.train_weighted_policy` run per preference point of the grid.

The artifact is one directory: ``runs/<preference>/`` per point, the tokenizer, and ``pluralign.json``
listing every run with its preference (``extra["runs"]``). Finished runs are skipped on a rerun, so an
interrupted grid resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pluralign.methods.morlhf.config import MORLHFConfig
from pluralign.models.manifest import Manifest
from pluralign.objectives.set import ObjectiveSet
from pluralign.preferences.weights import preference_grid
from pluralign.training.rl import save_runs_model, train_runs


def run_name(weights: Sequence[float]) -> str:
    return "w_" + "_".join(f"{w:.3f}" for w in weights)


def train_morlhf(
    config: MORLHFConfig,
    objectives: ObjectiveSet,
    prompts: Sequence[Any],
    progress: Callable[[str], None] = print,
    callbacks: Sequence[Any] | None = None,
) -> Path:
    """Train every preference point of the grid and write the MORLHF model directory (``config.output_dir``)."""
    grid = preference_grid(len(objectives), config.grid_points)
    runs = [(run_name(w), ", ".join(f"{n}={x:g}" for n, x in zip(objectives.names, w)), w) for w in grid]
    start, tokenizer, out = train_runs(config, objectives, prompts, runs, "morlhf", progress, callbacks)
    extra = {
        "runs": [{"preference": [float(x) for x in w], "path": f"runs/{name}"} for name, _, w in runs],
        "trainer": "rloo",
        "max_steps": config.max_steps,
    }
    manifest = Manifest.for_objectives("morlhf", objectives, mapping="nearest", base_model=start, extra=extra)
    return save_runs_model(out, tokenizer, manifest)
