"""Reward models pluralign trained (btl, npbtl, multihead, classifier, ensemble): :func:`load_reward_model`,
their pairwise accuracy (with its 95% confidence interval, and how alike two models judge), and any of
them as an objective. An ensemble folder (``--type ensemble``) lists trained members and scores with the
mean of their z-scores: several reward models as ONE objective.

Each type's scorer is ``pluralign.objectives.learned.<type>``, whose ``load(model_dir, manifest)`` returns an
object with ``score(prompts, responses, context=None) -> list[float]``; every trainer ends with
:func:`record_held_out_accuracy` (``eval_results.json`` and the manifest's ``extra["held_out"]``).

Spec forms: ``--objective harmless=runs/rm`` (a directory whose ``pluralign.json`` names a reward-model
type), ``harmless=reward_model:runs/rm``, or in YAML::

    objectives:
      - {name: harmless, type: reward_model, model: runs/rm}
      - {name: me, type: reward_model, model: runs/npbtl, context: my_choices.jsonl}

An NP-BTL model scores for the fixed user whose choices are in ``context`` (a pairs file:
prompt / chosen / rejected; without one, its learnt default user); in the short form append
``,context=FILE``: ``me=runs/npbtl,context=my_choices.jsonl``. A multi-head model scores with ``head``
(default: the mean over heads).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.errors import ConfigError
from pluralign.models.manifest import MANIFEST_NAME, Manifest
from pluralign.objectives.base import Objective


def is_reward_model_dir(path: str | Path) -> bool:
    """True when ``path`` is a directory whose manifest names a pluralign reward-model type."""
    p = Path(path).expanduser()
    if not (p / MANIFEST_NAME).is_file():
        return False
    try:
        return Manifest.load(p).method in REWARD_MODEL_TYPES
    except Exception:  # a broken manifest is reported when the objective is built
        return False


class TrainedRewardModelObjective(Objective):
    """Scores with ``pluralign.load_reward_model(model).score(prompts, responses, context)``."""

    def __init__(
        self, name: str, model: str, context: str | None = None, head: str | None = None, batch_size: int = 64
    ) -> None:
        self.name = name
        self.model_dir = Path(model).expanduser().resolve()
        manifest = Manifest.load(self.model_dir)
        if manifest.method not in REWARD_MODEL_TYPES:
            raise ConfigError(
                f"objective {name!r}: {model} holds a {manifest.method!r} model, not a reward model "
                f"({', '.join(REWARD_MODEL_TYPES)})"
            )
        self.method = manifest.method
        if context is not None and self.method != "npbtl":
            raise ConfigError(f"objective {name!r}: a {self.method} reward model takes no context; drop 'context'")
        if head is not None and self.method != "multihead":
            raise ConfigError(f"objective {name!r}: only a multihead reward model has heads; drop 'head'")
        self.context_file = str(Path(context).expanduser()) if context else None
        self.context = self._read_context(self.context_file) if self.context_file else None
        self.head = head
        self.batch_size = batch_size

    @staticmethod
    def _read_context(path: str) -> list[tuple[Any, Any, Any]]:
        from pluralign.data.pairs import load_pairs

        if not Path(path).is_file():
            raise ConfigError(f"context file {path!r} does not exist; give a pairs file (prompt, chosen, rejected)")
        return [(p["prompt"], p["chosen"], p["rejected"]) for p in load_pairs(path, report=None)]

    @cached_property
    def reward_model(self) -> Any:
        return load_reward_model(self.model_dir)

    @property
    def identity(self) -> str:
        stamp = model_stamp(self.model_dir)
        ctx = hashlib.sha1(repr(self.context).encode()).hexdigest()[:16] if self.context else "-"
        return f"reward_model:{self.model_dir}:{stamp}:{ctx}:{self.head}"

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        kwargs = {"head": self.head} if self.head else {}
        return list(self.reward_model.score(list(prompts), list(responses), context=self.context, **kwargs))


def model_stamp(model_dir: Path) -> str:
    """Changes when the model's manifest is rewritten, or an ensemble member's is."""
    stamp = str((model_dir / MANIFEST_NAME).stat().st_mtime_ns)
    members = Manifest.load(model_dir).extra.get("members") or []
    return stamp + "".join(f"+{model_stamp(Path(m['path']))}" for m in members if isinstance(m, dict) and "path" in m)


REWARD_MODEL_TYPES = ("btl", "npbtl", "multihead", "classifier", "ensemble")
EVAL_FILE = "eval_results.json"


def load_reward_model(path: str | Path, **kwargs: Any) -> Any:
    """Load any reward-model folder pluralign trained; the scorer of each type is in
    :mod:`pluralign.objectives.learned` (its trainer, above, in ``pluralign.reward_models.<type>``)."""
    manifest = Manifest.load(path)
    if manifest.method not in REWARD_MODEL_TYPES:
        raise ConfigError(
            f"{path} holds a {manifest.method!r} model, not a reward model ({', '.join(REWARD_MODEL_TYPES)})"
        )
    if manifest.method == "btl":
        from pluralign.objectives.learned import btl as module
    elif manifest.method == "npbtl":
        from pluralign.objectives.learned import npbtl as module
    elif manifest.method == "multihead":
        from pluralign.objectives.learned import multihead as module
    elif manifest.method == "classifier":
        from pluralign.objectives.learned import classifier as module
    else:  # an ensemble loads its members, of any type, through this same function
        from pluralign.objectives.learned import ensemble

        return ensemble.load(Path(path), manifest, load_member=load_reward_model)
    return module.load(Path(path), manifest, **kwargs)


def pair_margins(
    score: Callable[[list[Any], list[Any]], Sequence[float]], pairs: Sequence[Mapping[str, Any]]
) -> np.ndarray:
    """``score(chosen) - score(rejected)`` per pair; ``score(prompts, responses)`` is called once for all."""
    if not pairs:
        raise ConfigError("no pairs to measure accuracy on")
    prompts = [p["prompt"] for p in pairs]
    scores = np.asarray(
        score(prompts + prompts, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]), dtype=np.float64
    )
    n = len(pairs)
    return scores[:n] - scores[n:]


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% for the default ``z``); sound at 0 and n too."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * float(np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)))
    return (max(0.0, centre - half), min(1.0, centre + half))


def accuracy_of_margins(margins: np.ndarray) -> dict[str, Any]:
    """Pairwise accuracy (ties are misses and are counted) with its 95% Wilson interval."""
    n = int(margins.size)
    right = int((margins > 0).sum())
    lo, hi = wilson_interval(right, n)
    return {
        "pairwise_accuracy": round(right / n, 4),
        "ci95": [round(lo, 4), round(hi, 4)],
        "ties": int((margins == 0).sum()),
        "pairs": n,
    }


def pairwise_accuracy(
    score: Callable[[list[Any], list[Any]], Sequence[float]], pairs: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Share of pairs whose chosen response scores strictly higher than the rejected one (ties count as
    misses and are reported), with its 95% confidence interval; ``score`` is called once for all responses."""
    return accuracy_of_margins(pair_margins(score, pairs))


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """How alike two scorers judge the same pairs: the share of pairs on which they prefer the same response
    (a tie agrees only with a tie), and the Pearson correlation of their margins."""
    same = float((np.sign(a) == np.sign(b)).mean())
    corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    return {"agreement": round(same, 4), "margin_correlation": round(corr, 4)}


def record_held_out_accuracy(
    model_dir: str | Path,
    held_pairs: Sequence[Mapping[str, Any]],
    extra: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = print,
    load_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score the held-out pairs with the saved model (the same path users load; ``load_options`` go to
    :func:`load_reward_model`, e.g. the trainer's embedding cache), and write the result to
    ``eval_results.json`` and the manifest; returns it."""
    model_dir = Path(model_dir)
    result: dict[str, Any] = {}
    if held_pairs:
        rm = load_reward_model(model_dir, **dict(load_options or {}))
        result = pairwise_accuracy(lambda p, r: rm.score(p, r), held_pairs)
        if progress:
            progress(f"held-out pairwise accuracy: {result['pairwise_accuracy']:.3f} on {result['pairs']} pairs")
    result.update(extra or {})
    (model_dir / EVAL_FILE).write_text(json.dumps(result, indent=2))
    manifest = Manifest.load(model_dir)
    manifest.extra["held_out"] = result
    manifest.save(model_dir)
    return result


def update_held_out(model_dir: str | Path, fields: Mapping[str, Any]) -> None:
    """Add ``fields`` (e.g. the seconds per training stage) to ``eval_results.json`` and the manifest."""
    model_dir = Path(model_dir)
    path = model_dir / EVAL_FILE
    result = json.loads(path.read_text()) if path.is_file() else {}
    result.update(fields)
    path.write_text(json.dumps(result, indent=2))
    manifest = Manifest.load(model_dir)
    manifest.extra["held_out"] = result
    manifest.save(model_dir)
