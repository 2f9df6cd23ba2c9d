"""One call that turns trained policies into front.json + pareto.png + report.html.

Used by ``pluralign evaluate``, ``pluralign demo`` and the benchmarks, so every front is measured the
same way: the SFT start's outputs set the normalisation and appear as the ``sft`` front.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pluralign.evaluation.front import (
    Front,
    constant_front,
    evaluate_front,
    finalise,
    generate_and_score,
    output_stats,
    set_ranges,
    write_front_json,
)
from pluralign.evaluation.metrics import DEFAULT_REFERENCE_Z
from pluralign.evaluation.plot import plot_fronts
from pluralign.evaluation.report import write_report
from pluralign.models.state import is_main_process, world
from pluralign.objectives import ObjectiveSet
from pluralign.preferences.weights import preference_grid


def sft_front(
    base_model: str,
    prompts: Sequence[Any],
    objectives: ObjectiveSet,
    grid,
    seed: int = 0,
    name: str = "sft",
    **generation_kwargs: Any,
) -> tuple[Front, dict]:
    """Generate with the unconditioned SFT model; returns its (constant) front, named ``name``, and its
    output statistics."""
    import torch

    from pluralign.generation.batched import generate_batched
    from pluralign.models.loading import load_causal_lm, load_tokenizer

    t = time.time()
    model, tok = load_causal_lm(base_model), load_tokenizer(base_model)
    torch.manual_seed(seed + world()[0])
    texts, scores = generate_and_score(
        lambda idx: generate_batched(model, tok, [prompts[i] for i in idx], batch_size=64, **generation_kwargs),
        prompts,
        objectives,
    )
    front = constant_front(name, texts, prompts, objectives, grid, scores=scores)
    front.wall_seconds = time.time() - t
    return front, output_stats(texts, prompts, objectives, scores=scores)


def evaluate_models(
    policies: dict[str, Any],
    base_model: str,
    prompts: Sequence[Any],
    objectives: ObjectiveSet,
    out_dir: str | Path,
    train_seconds: dict[str, float] | None = None,
    grid: Sequence[Sequence[float]] | None = None,
    reference_z: float = DEFAULT_REFERENCE_Z,
    seed: int = 0,
    title: str = "pluralign: Pareto fronts",
    progress: Callable[[str], None] | None = print,
    range_stats: dict[str, Any] | None = None,
    base_name: str = "sft",
    **generation_kwargs: Any,
) -> list[Front]:
    """Evaluate each policy over the grid next to the SFT model; write the three result files.

    ``range_stats``: per objective the statistics (an ``ObjectiveStats`` with quantiles) of the training
    data, whose 5th-95th percentile spread is each front's ``range`` unit; default: the SFT model's outputs.
    Under ``accelerate launch`` each process generates and scores its share of every grid; the main
    process writes the files. ``base_name``: the starting model's front in front.json (a world whose
    start is a pretrained model, not an SFT model pluralign made, calls it ``base``).
    """
    grid = [list(w) for w in (grid or preference_grid(len(objectives)))]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base, norm = sft_front(base_model, prompts, objectives, grid, seed=seed, name=base_name, **generation_kwargs)
    fronts = [base]
    for name, policy in policies.items():
        t = time.time()
        front = evaluate_front(
            policy, prompts, objectives, grid, method=name, seed=seed, progress=progress, **generation_kwargs
        )
        front.wall_seconds = (train_seconds or {}).get(name, 0.0) + (time.time() - t)
        fronts.append(front)
    write_results(fronts, norm, objectives.names, out_dir, title=title, reference_z=reference_z, range_stats=range_stats)
    return fronts


def write_results(
    fronts: Sequence[Front],
    norm: dict,
    names: Sequence[str],
    out_dir: str | Path,
    title: str = "pluralign: Pareto fronts",
    reference_z: float = DEFAULT_REFERENCE_Z,
    extra: dict[str, Any] | None = None,
    range_stats: dict | None = None,
) -> None:
    """Set the fronts' hypervolumes and ranges; write front.json (plus ``extra`` keys), pareto.png and report.html.

    ``range_stats`` (objective -> statistics with q05/q95) is the spread the range is measured in (the
    training data's); objectives without it fall back to ``norm`` (the SFT model's outputs)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reference = finalise(fronts, norm, names, reference_z)
    set_ranges(fronts, names, {**norm, **(range_stats or {})})
    if not is_main_process():  # every process holds the whole fronts; the main one writes them
        return
    write_front_json(out_dir / "front.json", names, fronts, reference, norm, extra=extra)
    plot_fronts(fronts, names, out_dir / "pareto.png", title=title)
    write_report(out_dir / "report.html", fronts, names, reference, out_dir / "pareto.png", title)


def summary_table(fronts: Sequence[Front], names: Sequence[str]) -> str:
    head = (
        f"{'method':<10} {'wall s':>8} {'HV':>8} "
        + " ".join(f"{'steer ' + n:>18}" for n in names)
        + " "
        + " ".join(f"{'range ' + n:>18}" for n in names)
    )
    rows = [head, "-" * len(head)]

    def cells(values) -> str:
        return " ".join(f"{'n/a' if s is None else f'{s:.3f}':>18}" for s in (values or [None] * len(names)))

    for f in fronts:
        rows.append(f"{f.method:<10} {f.wall_seconds:>8.1f} {f.hypervolume:>8.3f} {cells(f.steerability)} {cells(f.range)}")
    return "\n".join(rows)
