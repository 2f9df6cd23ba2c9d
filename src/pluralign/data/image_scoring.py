"""Scoring (caption, image) pairs with K image objectives through the same resumable SQLite cache as text.

Keys are :func:`pluralign.data.scoring.pair_key` of the caption and a hash of the image's pixels, so a
rerun after a kill scores only the images that are missing, and identical images are scored once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pluralign.data.scoring import ScoreCache, pair_key
from pluralign.objectives.image import image_digest
from pluralign.objectives.set import ObjectiveSet, check_finite


def score_images(
    captions: Sequence[str],
    images: Sequence[Any] | Callable[[int], Any],
    objectives: ObjectiveSet,
    cache: ScoreCache | None = None,
    chunk_size: int = 256,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, list[float]]:
    """``{objective: [score per image]}``; ``images`` may be a list or ``i -> image`` (a lazy dataset)."""
    get = images if callable(images) else images.__getitem__
    keys = [pair_key(c, image_digest(get(i))) for i, c in enumerate(captions)]
    result: dict[str, list[float]] = {}
    for obj in objectives.objectives:
        known = cache.get(obj.identity, keys) if cache is not None else {}
        todo = sorted({k: i for i, k in enumerate(keys) if k not in known}.values())
        done = len(keys) - len(todo)
        for start in range(0, len(todo), chunk_size):
            idx = todo[start : start + chunk_size]
            vals = obj.score([captions[i] for i in idx], [get(i) for i in idx])
            check_finite(vals, obj.name)
            new = {keys[i]: v for i, v in zip(idx, vals)}
            known.update(new)
            if cache is not None:
                cache.put(obj.identity, new)
            done += len(idx)
            if progress:
                progress(obj.name, done, len(keys))
        result[obj.name] = [known[k] for k in keys]
    return result
