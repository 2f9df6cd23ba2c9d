"""Pareto fronts over a preference grid: generate at every preference, score, summarise, save.

All (prompt, preference) pairs of the grid are generated through ``policy.generate_many`` in one
batched call; scores are the mean raw score per objective per preference point. Hypervolume uses
z-scores with statistics of the SFT model's outputs (one reference point for all methods).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.evaluation.metrics import DEFAULT_REFERENCE_Z, hypervolume, steerability
from pluralign.models.state import gather_shares, my_share, world
from pluralign.objectives import ObjectiveSet, ObjectiveStats
from pluralign.preferences.weights import preference_grid

# the starting model's front: "sft" where pluralign made the starting model, "base" for a pretrained one
STARTING_FRONTS = ("sft", "base")


@dataclass
class Front:
    method: str
    points: list[dict[str, list[float]]]  # {"preference": [K], "scores": [K]}
    wall_seconds: float = 0.0
    hypervolume: float = 0.0
    steerability: list[float | None] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)  # a few generations per point, for the report
    range: list[float | None] = field(default_factory=list)  # span over the grid / data spread, per objective
    # per point, per prompt, per objective: the raw scores behind each mean (kept in memory, not in front.json)
    prompt_scores: list[list[list[float]]] = field(default_factory=list, repr=False)
    # per point, per prompt: the generated text behind those scores (in memory only; samples.md quotes them)
    prompt_texts: list[list[str]] = field(default_factory=list, repr=False)

    @property
    def weights(self) -> np.ndarray:
        return np.array([p["preference"] for p in self.points])

    @property
    def scores(self) -> np.ndarray:
        return np.array([p["scores"] for p in self.points])


def evaluate_front(
    policy,
    prompts: Sequence[Any],
    objectives: ObjectiveSet,
    grid: Sequence[Sequence[float]] | None = None,
    method: str | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    keep_samples: int = 2,
    **generation_kwargs: Any,
) -> Front:
    """Generate for every prompt at every grid preference and return the front (hypervolume unset)."""
    import torch

    grid = [list(w) for w in (grid or preference_grid(len(objectives)))]
    all_prompts = [p for _ in grid for p in prompts]
    all_prefs = [dict(zip(objectives.names, w)) for w in grid for _ in prompts]
    torch.manual_seed(seed + world()[0])
    t = time.time()
    texts, scores = generate_and_score(
        lambda idx: policy.generate_many([all_prompts[i] for i in idx], [all_prefs[i] for i in idx], **generation_kwargs),
        all_prompts,
        objectives,
    )
    from pluralign.data.loading import prompt_text

    n = len(prompts)
    points, samples, per_prompt = [], [], []
    for g, w in enumerate(grid):
        means = [float(np.mean(scores[name][g * n : (g + 1) * n])) for name in objectives.names]
        points.append({"preference": [float(x) for x in w], "scores": means})
        per_prompt.append([[float(scores[name][g * n + j]) for name in objectives.names] for j in range(n)])
        for j in range(min(keep_samples, n)):
            samples.append({"preference": w, "prompt": prompt_text(prompts[j]), "response": texts[g * n + j]})
    texts_per_point = [texts[g * n : (g + 1) * n] for g in range(len(grid))]
    front = Front(method or policy.method, points, samples=samples, prompt_scores=per_prompt, prompt_texts=texts_per_point)
    front.steerability = steerability(front.weights, front.scores)
    if progress:
        progress(f"evaluate: {front.method} front over {len(grid)} preferences x {n} prompts in {time.time() - t:.1f}s")
    return front


def generate_and_score(
    generate: Callable[[list[int]], list[str]], prompts: Sequence[Any], objectives: ObjectiveSet
) -> tuple[list[str], dict[str, list[float]]]:
    """``generate(row indices) -> texts``, then scores; under ``accelerate launch`` each process does its
    share of the rows and every process gets all texts and scores back in row order. Conversational
    prompts reach the objectives as messages (a reward model renders them with its chat template)."""
    idx = my_share(range(len(prompts)))
    texts = generate(idx) if idx else []
    mine = objectives.score([prompts[i] for i in idx], texts) if idx else {}
    rows = gather_shares(
        [(t, [float(mine[n][j]) for n in objectives.names]) for j, t in enumerate(texts)], len(prompts)
    )
    scores = {n: [r[1][k] for r in rows] for k, n in enumerate(objectives.names)}
    return [r[0] for r in rows], scores


def constant_front(
    method: str,
    responses: Sequence[str],
    prompts: Sequence[Any],
    objectives: ObjectiveSet,
    grid,
    scores: dict[str, Sequence[float]] | None = None,
) -> Front:
    """A front for an unsteerable model (e.g. the SFT start): the same outputs at every preference."""
    from pluralign.data.loading import prompt_text

    if scores is None:
        scores = objectives.score(list(prompts), list(responses))
    means = [float(np.mean(scores[name])) for name in objectives.names]
    points = [{"preference": [float(x) for x in w], "scores": means} for w in grid]
    samples = [
        {"preference": None, "prompt": prompt_text(p), "response": r} for p, r in list(zip(prompts, responses))[:2]
    ]
    rows = [[float(scores[name][j]) for name in objectives.names] for j in range(len(responses))]
    front = Front(method, points, samples=samples, prompt_scores=[rows for _ in points])
    front.steerability = steerability(front.weights, front.scores)
    return front


def output_stats(
    responses: Sequence[str],
    prompts: Sequence[Any],
    objectives: ObjectiveSet,
    scores: dict[str, Sequence[float]] | None = None,
) -> dict[str, ObjectiveStats]:
    """Statistics of a model's per-sample scores (the SFT model's: the hypervolume's normalisation)."""
    if scores is None:
        scores = objectives.score(list(prompts), list(responses))
    return {n: ObjectiveStats.fit(scores[n], n) for n in objectives.names}


def finalise(
    fronts: Sequence[Front],
    norm: dict[str, ObjectiveStats],
    names: Sequence[str],
    reference_z: float = DEFAULT_REFERENCE_Z,
) -> list[float]:
    """Set every front's hypervolume with one shared reference point; returns that point (z-units)."""
    ref = [reference_z] * len(names)
    for f in fronts:
        z = np.stack([norm[n].z(f.scores[:, i]) for i, n in enumerate(names)], axis=1)
        f.hypervolume = hypervolume(z, ref)
    return ref


def set_ranges(fronts: Sequence[Front], names: Sequence[str], spread_stats: dict[str, ObjectiveStats]) -> None:
    """Set every front's ``range`` (METHODS.md §6) against the 5th-95th percentile spread in ``spread_stats``."""
    from pluralign.evaluation.metrics import data_spread, objective_range

    spreads = [data_spread(spread_stats.get(n)) for n in names]
    for f in fronts:
        f.range = objective_range(f.scores, spreads)


def write_front_json(
    path: str | Path,
    names: Sequence[str],
    fronts: Sequence[Front],
    reference: Sequence[float],
    norm: dict[str, ObjectiveStats],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write front.json (DESIGN.md's contract); ``extra`` adds top-level keys (e.g. ``matched``)."""
    data = {
        "objectives": list(names),
        "reference_point": list(reference),
        "reference_point_units": "z-scores of the SFT model's outputs (see normalisation)",
        "normalisation": {n: {"mean": norm[n].mean, "std": norm[n].std} for n in names},
        "fronts": [{k: v for k, v in asdict(f).items() if k != "prompt_scores"} for f in fronts],
        **(extra or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path


def read_front_json(path: str | Path) -> tuple[list[str], list[Front], dict[str, Any]]:
    data = json.loads(Path(path).read_text())
    fronts = [Front(**f) for f in data["fronts"]]
    return data["objectives"], fronts, data
