"""Standard preference pairs (TRL's formats), checked row by row, and held-out splits by pair id.

Accepted rows (TRL's preference formats):

- explicit prompt: ``prompt``, ``chosen``, ``rejected``;
- implicit prompt: ``chosen`` and ``rejected`` holding the whole text (or dialogue); the shared prefix is
  the prompt, split exactly as TRL does (``trl.maybe_extract_prompt``);
- plain text or conversational (lists of ``{"role", "content"}`` messages) in either layout.

An optional ``attribute`` column names the user type that made the choice (NP-BTL's hidden users);
without it every pair belongs to one user type, :data:`DEFAULT_USER_TYPE`.

A *pair id* identifies a pair whatever user type chose it (prompt and the unordered two responses), so
held-out splits never put one pair in training for one user type and in evaluation for another.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from pluralign.errors import DataError

DEFAULT_USER_TYPE = "preference"
PAIR_FIELDS = ("chosen", "rejected")


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "content" in m for m in value)


def _empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list):
        return not any(str(m.get("content", "")).strip() for m in value if isinstance(m, dict))
    return False


def normalize_pair(row: Mapping[str, Any], index: int = 0, prompt_column: str = "prompt") -> dict[str, Any]:
    """One row as ``{"prompt", "chosen", "rejected"[, "attribute"]}``; DataError naming the field otherwise."""
    from trl.data_utils import maybe_extract_prompt

    for key in PAIR_FIELDS:
        if key not in row:
            raise DataError(
                f"row {index} has no {key!r} (columns: {', '.join(sorted(row))}); "
                "preference pairs need 'chosen' and 'rejected' (and 'prompt' unless it is their shared prefix)"
            )
        value = row[key]
        if not isinstance(value, str) and not _is_messages(value):
            raise DataError(f"row {index}: {key!r} must be text or a list of messages, got {type(value).__name__}")
    example = {"chosen": row["chosen"], "rejected": row["rejected"]}
    if prompt_column in row and row[prompt_column] is not None:
        example["prompt"] = row[prompt_column]
    if row["chosen"] == row["rejected"]:
        raise InvalidPair(f"row {index}: 'chosen' and 'rejected' are identical; a pair needs two different responses")
    out = dict(maybe_extract_prompt(example))
    if "prompt" not in out:
        out["prompt"] = ""
    for key in PAIR_FIELDS:
        if _empty(out[key]):
            raise InvalidPair(
                f"row {index}: {key!r} is empty (after removing the prompt); every pair needs two non-empty responses"
            )
    if "attribute" in row and row["attribute"] not in (None, ""):
        out["attribute"] = str(row["attribute"])
    return out


class InvalidPair(DataError):
    """A row that is a pair in form but not in content (an empty response, two identical responses)."""


def load_pairs(
    data: Any,
    prompt_column: str = "prompt",
    split: str = "train",
    skip_invalid: bool = False,
    report: Callable[[str], None] | None = print,
) -> list[dict[str, Any]]:
    """Preference pairs from a path / hub id, a ``datasets.Dataset`` or a list of dicts (see the module doc).

    A row with an empty response or two identical responses is an error naming the row and field; with
    ``skip_invalid`` such rows are dropped and one line saying how many (and the first reason) is reported.
    """
    if isinstance(data, str):
        from pluralign.data.loading import load_any

        data = load_any(data, split=split)
    columns = list(getattr(data, "column_names", None) or [])
    missing = [k for k in PAIR_FIELDS if columns and k not in columns]
    if missing:
        raise DataError(
            f"the dataset has no column {missing[0]!r} (columns: {', '.join(columns)}); "
            "preference pairs need 'chosen' and 'rejected'"
        )
    rows, skipped = [], []
    for i, r in enumerate(data):
        try:
            rows.append(normalize_pair(dict(r), i, prompt_column))
        except InvalidPair as exc:
            if not skip_invalid:
                raise InvalidPair(f"{exc}; or pass --skip_invalid_pairs to drop such rows") from None
            skipped.append(str(exc))
    if skipped and report:
        report(f"skipped {len(skipped)} invalid pair(s) (first: {skipped[0]})")
    if not rows:
        raise DataError("the dataset is empty; give a file with at least one preference pair")
    return rows


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def pair_id(pair: Mapping[str, Any]) -> str:
    """The same id for a pair whoever chose it (the prompt and the unordered two responses)."""
    a, b = sorted([_text(pair["chosen"]), _text(pair["rejected"])])
    return hashlib.sha1(f"{_text(pair.get('prompt', ''))}\x00{a}\x00{b}".encode()).hexdigest()


def held_out_ids(ids: Sequence[str], eval_fraction: float, seed: int = 0) -> set[str]:
    """A random ``eval_fraction`` of the distinct ids (at least one when the fraction is positive)."""
    distinct = sorted(set(ids))
    if eval_fraction <= 0 or not distinct:
        return set()
    order = np.random.default_rng(seed).permutation(len(distinct))
    n = max(1, int(round(eval_fraction * len(distinct))))
    if n >= len(distinct):
        raise DataError(f"eval_fraction {eval_fraction} leaves no training data ({len(distinct)} distinct pairs)")
    return {distinct[i] for i in order[:n]}


def split_by_id(ids: Sequence[str], eval_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """``(train indices, eval indices)``: every item sharing an id lands on the same side."""
    held = held_out_ids(ids, eval_fraction, seed)
    train = [i for i, k in enumerate(ids) if k not in held]
    evals = [i for i, k in enumerate(ids) if k in held]
    return train, evals


def split_pairs(
    pairs: Sequence[Mapping[str, Any]], eval_fraction: float, seed: int = 0
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """Train / held-out pairs, split by :func:`pair_id` across all user types."""
    train, evals = split_by_id([pair_id(p) for p in pairs], eval_fraction, seed)
    return [pairs[i] for i in train], [pairs[i] for i in evals]


def pairs_by_score(
    samples: Sequence[dict], objective: str, seed: int, max_pairs: int | None = None, min_margin: float = 1e-6
) -> list[dict[str, str]]:
    """Pairs of scored responses to the same prompt; ``chosen`` scores higher on ``objective`` by over
    ``min_margin``. Shuffled with ``seed``, at most ``max_pairs``."""
    key = f"score_{objective}"
    groups: dict[str, list[dict]] = {}
    for s in samples:
        groups.setdefault(s["prompt"], []).append(s)
    out = []
    for prompt, group in groups.items():
        for a, b in itertools.combinations(group, 2):
            if abs(a[key] - b[key]) <= min_margin:
                continue
            hi, lo = (a, b) if a[key] > b[key] else (b, a)
            out.append({"prompt": prompt, "chosen": hi["response"], "rejected": lo["response"]})
    random.Random(seed).shuffle(out)
    return out[:max_pairs] if max_pairs else out
