"""Users with hidden types from attribute-labelled data: pairs labelled by the attribute that decided them.

A dataset that rates responses on several attributes (or labels pairs per attribute) hides several
"users": one who follows helpfulness, one who follows honesty, ... (METHODS.md §5). This module turns such
data into ``{"prompt", "chosen", "rejected", "attribute", "conflict"}`` rows, one per attribute that
strictly prefers one response of a pair. ``conflict`` is True when, among the chosen attributes, one
prefers each side; ``conflicting_only`` keeps only those pairs, where any context-free model is capped
at 50%.

Formats (``format="auto"`` detects them from the columns):

- ``ultrafeedback``: ``instruction`` + ``completions`` [{``response``, ``annotations``: {attr: {``Rating``}}}]
  (UltraFeedback's fine-grained format; "N/A" ratings are skipped);
- ``pairwise_ids``: ``prompt``, ``response_0``, ``response_1`` and one ``<attr>_response_id`` column per
  attribute (PKU-SafeRLHF: ``better_response_id``, ``safer_response_id`` -> attributes ``better``, ``safer``);
- ``ratings``: one row per (prompt, response) with a numeric column per attribute (HelpSteer's 0-4
  ``helpfulness``, ``correctness``, ...); responses to the same prompt are paired;
- ``pairs``: already pairwise rows in any of TRL's preference formats (explicit or implicit prompt, plain or
  conversational; see :mod:`pluralign.data.pairs`), with an optional ``attribute`` column; without one,
  every pair belongs to a single user type.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pluralign.errors import DataError

FORMATS = ("auto", "ultrafeedback", "pairwise_ids", "ratings", "pairs")
HELPSTEER_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
ID_SUFFIX = "_response_id"


def _rows(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, str):
        from pluralign.data.loading import load_any

        data = load_any(data)
    rows = [dict(r) for r in data]
    if not rows:
        raise DataError("the attribute dataset is empty; give a dataset with at least one row")
    return rows


def detect_format(columns: Iterable[str]) -> str:
    """The attribute format of a dataset with these columns (DataError when none fits)."""
    cols = set(columns)
    if "completions" in cols:
        return "ultrafeedback"
    if {"response_0", "response_1"} <= cols and any(c.endswith(ID_SUFFIX) for c in cols):
        return "pairwise_ids"
    if {"chosen", "rejected"} <= cols:
        return "pairs"
    if cols & {"chosen", "rejected"}:
        missing = "chosen" if "chosen" not in cols else "rejected"
        raise DataError(
            f"the dataset has no column {missing!r} (columns: {', '.join(sorted(cols))}); "
            "preference pairs need 'chosen' and 'rejected'"
        )
    if "response" in cols or "completion" in cols:
        return "ratings"
    raise DataError(
        f"cannot tell the attribute format from the columns {sorted(cols)}; pass format= one of {FORMATS[1:]}"
    )


def _number(value: Any) -> float | None:
    """A rating as a float; None for missing / "N/A" values."""
    if isinstance(value, Mapping):
        value = value.get("Rating", value.get("rating"))
    elif isinstance(value, list):
        value = value[0] if value else None
        return _number(value)
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _rated_pairs(
    prompt: Any, responses: Sequence[Any], ratings: Sequence[Mapping[str, float | None]], attributes: Sequence[str]
) -> list[tuple[Any, Any, Any, dict[str, int]]]:
    """For each response pair, the sign of each attribute's preference (+1: first wins, -1: second wins)."""
    out = []
    for i, j in itertools.combinations(range(len(responses)), 2):
        if responses[i] == responses[j]:
            continue
        signs = {}
        for a in attributes:
            ri, rj = ratings[i].get(a), ratings[j].get(a)
            if ri is not None and rj is not None and ri != rj:
                signs[a] = 1 if ri > rj else -1
        if signs:
            out.append((prompt, responses[i], responses[j], signs))
    return out


def _ultrafeedback(rows: list[dict], attributes: Sequence[str] | None) -> tuple[list, list[str]]:
    attrs = list(attributes or [])
    if not attrs:
        first = next((c for r in rows for c in r["completions"] if c.get("annotations")), None)
        if first is None:
            raise DataError("no completion has 'annotations'; this is not UltraFeedback's fine-grained format")
        attrs = sorted(first["annotations"])
    pairs = []
    for r in rows:
        if "instruction" not in r and "prompt" not in r:
            raise DataError("UltraFeedback rows need an 'instruction' (or 'prompt') column")
        prompt = r.get("instruction", r.get("prompt"))
        comps = r["completions"] or []
        responses = [c.get("response") for c in comps]
        ratings = [{a: _number((c.get("annotations") or {}).get(a)) for a in attrs} for c in comps]
        pairs += _rated_pairs(prompt, responses, ratings, attrs)
    return pairs, attrs


def _pairwise_ids(rows: list[dict], attributes: Sequence[str] | None) -> tuple[list, list[str]]:
    available = sorted(c[: -len(ID_SUFFIX)] for c in rows[0] if c.endswith(ID_SUFFIX))
    attrs = list(attributes or available)
    missing = [a for a in attrs if a not in available]
    if missing:
        raise DataError(f"no column {missing[0] + ID_SUFFIX!r}; the per-attribute id columns give {available}")
    pairs = []
    for r in rows:
        signs = {}
        for a in attrs:
            v = r.get(a + ID_SUFFIX)
            if v in (0, 1, "0", "1"):
                signs[a] = 1 if int(v) == 0 else -1
        if signs and r["response_0"] != r["response_1"]:
            pairs.append((r["prompt"], r["response_0"], r["response_1"], signs))
    return pairs, attrs


def _ratings(
    rows: list[dict], attributes: Sequence[str] | None, prompt_column: str, response_column: str | None
) -> tuple[list, list[str]]:
    cols = set(rows[0])
    response_column = response_column or ("response" if "response" in cols else "completion")
    for c in (prompt_column, response_column):
        if c not in cols:
            raise DataError(f"rating data has no column {c!r} (columns: {sorted(cols)}); pass the column name")
    attrs = list(attributes or [a for a in HELPSTEER_ATTRIBUTES if a in cols])
    if not attrs:
        raise DataError("no attribute columns found; pass attributes=[...] naming the rating columns")
    missing = [a for a in attrs if a not in cols]
    if missing:
        raise DataError(f"rating data has no attribute column {missing[0]!r} (columns: {sorted(cols)})")
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(str(r[prompt_column]), []).append(r)
    pairs = []
    for group in groups.values():
        responses = [g[response_column] for g in group]
        ratings = [{a: _number(g.get(a)) for a in attrs} for g in group]
        pairs += _rated_pairs(group[0][prompt_column], responses, ratings, attrs)
    return pairs, attrs


def attribute_pairs(
    data: Any,
    attributes: Sequence[str] | None = None,
    format: str = "auto",
    conflicting_only: bool = False,
    prompt_column: str = "prompt",
    response_column: str | None = None,
    skip_invalid: bool = False,
) -> list[dict[str, Any]]:
    """Pairs labelled by attribute: ``[{"prompt", "chosen", "rejected", "attribute", "conflict"}]``.

    ``data`` is a dataset, a list of dicts, or a path / hub id. ``attributes`` picks the attributes (the
    hidden user types; default: all found). See the module docstring for the formats.
    """
    if format not in FORMATS:
        raise DataError(f"unknown attribute format {format!r}; use one of {', '.join(FORMATS)}")
    rows = _rows(data)
    fmt = detect_format(rows[0]) if format == "auto" else format
    if fmt == "pairs":
        return _from_pairs(rows, attributes, conflicting_only, prompt_column, skip_invalid)
    if fmt == "ultrafeedback":
        pairs, attrs = _ultrafeedback(rows, attributes)
    elif fmt == "pairwise_ids":
        pairs, attrs = _pairwise_ids(rows, attributes)
    else:
        pairs, attrs = _ratings(rows, attributes, prompt_column, response_column)
    out = []
    for prompt, a, b, signs in pairs:
        conflict = len(set(signs.values())) > 1
        if conflicting_only and not conflict:
            continue
        for attr in attrs:
            if attr in signs:
                chosen, rejected = (a, b) if signs[attr] > 0 else (b, a)
                out.append(
                    {"prompt": prompt, "chosen": chosen, "rejected": rejected, "attribute": attr, "conflict": conflict}
                )
    if not out:
        what = "conflicting " if conflicting_only else ""
        raise DataError(f"no {what}pairs found for attributes {attrs}; check the attribute names and ratings")
    return out


def _from_pairs(
    rows: list[dict],
    attributes: Sequence[str] | None,
    conflicting_only: bool,
    prompt_column: str = "prompt",
    skip_invalid: bool = False,
) -> list[dict[str, Any]]:
    """Already pairwise rows, ``attribute`` optional (one user type without it); a pair is conflicting when
    two attributes disagree."""
    from pluralign.data.pairs import DEFAULT_USER_TYPE, load_pairs

    has_attribute = any("attribute" in r for r in rows)
    for i, r in enumerate(rows):
        if has_attribute and r.get("attribute") in (None, ""):
            raise DataError(f"row {i} has no 'attribute'; every pair needs the user type that chose it")
    rows = load_pairs(rows, prompt_column=prompt_column, skip_invalid=skip_invalid)
    for r in rows:
        r.setdefault("attribute", DEFAULT_USER_TYPE)
    wanted = set(attributes) if attributes else None
    rows = [r for r in rows if wanted is None or r["attribute"] in wanted]
    winners: dict[tuple, set] = {}
    for r in rows:
        key = (str(r["prompt"]), *sorted([str(r["chosen"]), str(r["rejected"])]))
        winners.setdefault(key, set()).add(str(r["chosen"]))
    out = []
    for r in rows:
        key = (str(r["prompt"]), *sorted([str(r["chosen"]), str(r["rejected"])]))
        conflict = len(winners[key]) > 1
        if conflicting_only and not conflict:
            continue
        out.append({k: r[k] for k in ("prompt", "chosen", "rejected", "attribute")} | {"conflict": conflict})
    if not out:
        raise DataError("no pairs left after filtering by attribute / conflict; check the attribute names")
    return out


def group_by_attribute(pairs: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """``{attribute: [pair, ...]}`` in first-seen order: the user types NP-BTL and NP-DPO train on."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for p in pairs:
        out.setdefault(str(p["attribute"]), []).append(p)
    return out
