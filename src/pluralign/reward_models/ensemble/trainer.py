"""``pluralign train reward-model --type ensemble --members DIR --members DIR --dataset PAIRS``.

Nothing is trained: each member scores the responses of the training pairs (the split that leaves out
``eval_fraction`` by pair id, as the members' trainers do), its mean and standard deviation are stored,
and the ensemble's held-out accuracy is measured like every reward model's. Saves ``pluralign.json``
(method "ensemble", the members' absolute paths and statistics) and ``eval_results.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pluralign.config import train_command
from pluralign.data.pairs import load_pairs, split_pairs
from pluralign.errors import ConfigError, DataError
from pluralign.models.manifest import Manifest
from pluralign.models.state import is_main_process
from pluralign.objectives.set import ObjectiveStats
from pluralign.objectives.trained import is_reward_model_dir, load_reward_model, record_held_out_accuracy
from pluralign.reward_models.ensemble.config import EnsembleConfig


def member_paths(members: Sequence[str], output_dir: str) -> list[Path]:
    """The members as absolute folders; a ConfigError naming the first that is not a reward model."""
    out = Path(output_dir).expanduser().resolve()
    paths = []
    for m in members:
        p = Path(m).expanduser().resolve()
        if p == out:
            raise ConfigError(f"--members {m}: an ensemble cannot list its own --output_dir")
        if not is_reward_model_dir(p):
            raise ConfigError(f"--members {m} is not a reward model pluralign trained (no pluralign.json naming one)")
        paths.append(p)
    if len(set(paths)) < len(paths):
        raise ConfigError("--members lists the same folder twice; give each member once")
    return paths


def train_ensemble(cfg: EnsembleConfig, progress: Callable[[str], None] = print) -> Path:
    """Fit the members' score statistics on the training pairs, save the ensemble, measure it held out."""
    start = time.perf_counter()
    paths = member_paths(cfg.members, cfg.output_dir)
    if not cfg.dataset:
        raise DataError("--dataset is required: the pairs whose training split the z-scores are fitted on")
    pairs = load_pairs(cfg.dataset, cfg.prompt_column, skip_invalid=cfg.skip_invalid_pairs, report=progress)
    pairs = pairs[: cfg.max_pairs or None]
    train_pairs, held_pairs = split_pairs(pairs, cfg.eval_fraction, cfg.seed)
    prompts = [p["prompt"] for p in train_pairs]
    responses = [p["chosen"] for p in train_pairs] + [p["rejected"] for p in train_pairs]
    members = []
    for path in paths:
        scores = np.asarray(load_reward_model(path).score(prompts + prompts, responses), dtype=np.float64)
        stats = ObjectiveStats.fit(scores, str(path))
        members.append({"path": str(path), "method": Manifest.load(path).method, "mean": stats.mean, "std": stats.std})
        progress(f"ensemble: {path.name}: mean {stats.mean:.4g}, std {stats.std:.4g} on {len(responses)} responses")
    out = Path(cfg.output_dir)
    if is_main_process():
        Manifest(method="ensemble", objectives=[cfg.objective_name],
                 extra={"members": members, "train_pairs": len(train_pairs), "eval_fraction": cfg.eval_fraction,
                        "seed": cfg.seed, "dataset": cfg.dataset}).save(out)  # fmt: skip
        extra = {"train_pairs": len(train_pairs), "train_seconds": round(time.perf_counter() - start, 1)}
        record_held_out_accuracy(out, held_pairs, extra, progress)
    progress(f"saved an ensemble of {len(members)} reward models to {out}")
    return out


def run(argv: Sequence[str]) -> int:
    return train_command(EnsembleConfig, train_ensemble, argv, "reward-model --type ensemble")
