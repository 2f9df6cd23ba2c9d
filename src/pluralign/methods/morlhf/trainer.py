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
from pluralign.models.loading import load_tokenizer
from pluralign.objectives.set import ObjectiveSet
from pluralign.preferences.weights import preference_grid
from pluralign.training.manifest import Manifest
from pluralign.training.rl import check_start_model, run_is_done, train_weighted_policy
from pluralign.training.state import is_main_process, wait_for_everyone


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
    start = check_start_model(config)
    out = Path(config.output_dir)
    tokenizer = load_tokenizer(start)
    grid = preference_grid(len(objectives), config.grid_points)
    runs = []
    for i, weights in enumerate(grid, 1):
        run_dir = out / "runs" / run_name(weights)
        label = ", ".join(f"{n}={w:g}" for n, w in zip(objectives.names, weights))
        if run_is_done(run_dir):
            progress(f"morlhf run {i}/{len(grid)} ({label}): already trained, skipped")
        else:
            progress(f"morlhf run {i}/{len(grid)} ({label}): RLOO for {config.max_steps} steps")
            train_weighted_policy(
                config, objectives, weights, prompts, run_dir, processing_class=tokenizer, callbacks=callbacks
            )
        runs.append({"preference": [float(w) for w in weights], "path": str(run_dir.relative_to(out))})
    if is_main_process():
        tokenizer.save_pretrained(str(out))
        Manifest(
            method="morlhf",
            objectives=objectives.names,
            stats=objectives.stats_dict(),
            objective_specs=objectives.specs(),
            mapping="nearest",
            base_model=start,
            extra={"runs": runs, "trainer": "rloo", "max_steps": config.max_steps},
        ).save(out)
    wait_for_everyone()
    return out
