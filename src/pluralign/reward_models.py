"""Trained reward models (BTL, NP-BTL, multi-head, classifier): :func:`load_reward_model` reads ``pluralign.json``.

Each type provides ``pluralign.methods.<type>.reward_model.load(model_dir, manifest)`` returning an
object with ``score(prompts, responses, context=None) -> list[float]``. Every trainer ends with
:func:`record_held_out_accuracy`: the pairwise accuracy on the pairs it held out (split by pair id),
written to ``eval_results.json`` and to the manifest's ``extra["held_out"]``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.errors import ConfigError
from pluralign.manifest import Manifest

REWARD_MODEL_TYPES = ("btl", "npbtl", "multihead", "classifier")
EVAL_FILE = "eval_results.json"


def load_reward_model(path: str | Path, **kwargs: Any):
    manifest = Manifest.load(path)
    if manifest.method not in REWARD_MODEL_TYPES:
        raise ConfigError(
            f"{path} holds a {manifest.method!r} model, not a reward model ({', '.join(REWARD_MODEL_TYPES)})"
        )
    module = importlib.import_module(f"pluralign.methods.{manifest.method}.reward_model")
    return module.load(Path(path), manifest, **kwargs)


def pairwise_accuracy(
    score: Callable[[list[Any], list[Any]], Sequence[float]], pairs: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Share of pairs whose chosen response scores strictly higher than the rejected one (ties count as
    misses and are reported); ``score(prompts, responses)`` is called once for all responses."""
    if not pairs:
        raise ConfigError("no pairs to measure accuracy on")
    prompts = [p["prompt"] for p in pairs]
    scores = np.asarray(
        score(prompts + prompts, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]), dtype=np.float64
    )
    n = len(pairs)
    chosen, rejected = scores[:n], scores[n:]
    return {
        "pairwise_accuracy": round(float((chosen > rejected).mean()), 4),
        "ties": int((chosen == rejected).sum()),
        "pairs": n,
    }


def record_held_out_accuracy(
    model_dir: str | Path,
    held_pairs: Sequence[Mapping[str, Any]],
    extra: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Score the held-out pairs with the saved model (the same path users load), and write the result to
    ``eval_results.json`` and the manifest; returns it."""
    model_dir = Path(model_dir)
    result: dict[str, Any] = {}
    if held_pairs:
        rm = load_reward_model(model_dir)
        result = pairwise_accuracy(lambda p, r: rm.score(p, r), held_pairs)
        if progress:
            progress(f"held-out pairwise accuracy: {result['pairwise_accuracy']:.3f} on {result['pairs']} pairs")
    result.update(extra or {})
    (model_dir / EVAL_FILE).write_text(json.dumps(result, indent=2))
    manifest = Manifest.load(model_dir)
    manifest.extra["held_out"] = result
    manifest.save(model_dir)
    return result
