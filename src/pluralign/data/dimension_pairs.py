"""Pairwise preference data per dimension (helpfulness, harmlessness, ...) for SPO, MODPO and DPO.

Three layouts are recognised from their columns:

- **PKU-SafeRLHF**: ``prompt``, ``response_0``, ``response_1`` and one id column per dimension
  (``better_response_id`` -> dimension ``helpfulness``, ``safer_response_id`` -> ``harmlessness``);
- **HelpSteer-style ratings**: ``prompt``, ``response`` and one numeric column per attribute
  (``helpfulness``, ``correctness``, ...); responses to the same prompt become pairs, the higher rating
  chosen, ties (gap below ``min_rating_gap``) dropped;
- **plain pairs**: ``prompt``, ``chosen``, ``rejected``; the file is one dimension, named in the spec.

A spec is ``PATH`` (every dimension the file holds, or those asked for) or ``NAME=PATH`` (dimension
NAME from that file). The result maps each dimension, in order, to a list of
``{"prompt", "chosen", "rejected"}`` rows.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pluralign.data.loading import load_any
from pluralign.errors import DataError

PKU_DIMENSIONS = {"helpfulness": "better_response_id", "harmlessness": "safer_response_id"}
PKU_RESPONSES = ("response_0", "response_1")
HELPSTEER_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
PAIR_COLUMNS = ("prompt", "chosen", "rejected")

Pairs = list[dict[str, Any]]


def parse_dataset_spec(spec: str) -> tuple[str | None, str]:
    """``"name=path"`` -> (name, path); ``"path"`` -> (None, path). A path containing '=' must exist as is."""
    name, sep, path = spec.partition("=")
    if not sep or Path(spec).exists() or not name or "/" in name:
        return None, spec
    return name.strip(), path.strip()


def detect_layout(columns: Sequence[str]) -> str:
    """``"pku"``, ``"ratings"`` or ``"pairs"`` from a dataset's columns."""
    cols = set(columns)
    if cols & set(PKU_DIMENSIONS.values()) or cols >= set(PKU_RESPONSES):
        return "pku"
    if "chosen" in cols or "rejected" in cols:
        return "pairs"
    if "response" in cols:
        return "ratings"
    raise DataError(
        f"cannot tell the layout of a dataset with columns {sorted(cols)}; give prompt/chosen/rejected pairs, "
        "PKU-SafeRLHF columns (response_0, response_1, better_response_id) or prompt/response plus rating columns"
    )


def _require(columns: Sequence[str], needed: Sequence[str], source: str, hint: str) -> None:
    for col in needed:
        if col not in columns:
            raise DataError(f"{source} has no column {col!r} (columns: {', '.join(columns)}); {hint}")


def pku_pairs(rows: Sequence[dict[str, Any]], dimension: str, source: str = "dataset") -> Pairs:
    """PKU-SafeRLHF rows -> pairs on ``dimension`` (a name in PKU_DIMENSIONS or the id column itself)."""
    id_column = PKU_DIMENSIONS.get(dimension, dimension)
    columns = list(rows[0]) if rows else []
    _require(
        columns,
        ["prompt", *PKU_RESPONSES, id_column],
        source,
        f"PKU-SafeRLHF data needs prompt, response_0, response_1 and {id_column} for dimension {dimension!r}",
    )
    out = []
    for i, row in enumerate(rows):
        best = row[id_column]
        if best is None:
            continue
        if int(best) not in (0, 1):
            raise DataError(f"{source} row {i}: {id_column} is {best!r}; it must be 0 or 1")
        chosen, rejected = row[PKU_RESPONSES[int(best)]], row[PKU_RESPONSES[1 - int(best)]]
        if chosen != rejected:
            out.append({"prompt": row["prompt"], "chosen": chosen, "rejected": rejected})
    return out


def rating_pairs(
    rows: Sequence[dict[str, Any]], attribute: str, min_rating_gap: float = 1.0, source: str = "dataset"
) -> Pairs:
    """HelpSteer-style rows (one response and its ratings per row) -> pairs on one rated attribute."""
    columns = list(rows[0]) if rows else []
    _require(
        columns,
        ["prompt", "response", attribute],
        source,
        f"rating data needs prompt, response and a numeric column per dimension ({attribute!r} is missing)",
    )
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row[attribute] is not None:
            groups.setdefault(str(row["prompt"]), []).append(row)
    out = []
    for group in groups.values():
        for a, b in itertools.combinations(group, 2):
            gap = float(a[attribute]) - float(b[attribute])
            if abs(gap) < min_rating_gap:
                continue
            hi, lo = (a, b) if gap > 0 else (b, a)
            out.append({"prompt": hi["prompt"], "chosen": hi["response"], "rejected": lo["response"]})
    return out


def plain_pairs(rows: Sequence[dict[str, Any]], source: str = "dataset") -> Pairs:
    """Rows with prompt/chosen/rejected, kept as they are (other columns dropped)."""
    columns = list(rows[0]) if rows else []
    _require(columns, PAIR_COLUMNS, source, "pairwise files need prompt, chosen and rejected columns")
    return [{k: row[k] for k in PAIR_COLUMNS} for row in rows]


def dimensions_in(layout: str, columns: Sequence[str]) -> list[str]:
    """The dimensions a PKU or ratings dataset holds, in their canonical order."""
    if layout == "pku":
        return [name for name, col in PKU_DIMENSIONS.items() if col in columns]
    return [a for a in HELPSTEER_ATTRIBUTES if a in columns]


def load_dimension_pairs(
    specs: Sequence[str],
    dimensions: Sequence[str] | None = None,
    max_pairs: int | None = None,
    min_rating_gap: float = 1.0,
    seed: int = 0,
) -> dict[str, Pairs]:
    """Load every spec and return ``{dimension: pairs}`` in the order of ``dimensions`` (or of the specs).

    Raises DataError for a missing column, a requested dimension no spec provides, or a dimension
    without any pair.
    """
    if not specs:
        raise DataError("no dataset given; pass --dataset PATH or --dataset NAME=PATH (one per dimension)")
    wanted = list(dimensions or [])
    found: dict[str, Pairs] = {}
    for spec in specs:
        name, path = parse_dataset_spec(spec)
        rows = list(load_any(path))
        if not rows:
            raise DataError(f"dataset {path!r} is empty; give a file with at least one pair")
        layout = detect_layout(list(rows[0]))
        if layout == "pairs":
            dim = name or (wanted[0] if len(wanted) == 1 and len(specs) == 1 else None)
            if dim is None:
                raise DataError(f"dataset {path!r} holds plain pairs; name its dimension: --dataset NAME={path}")
            found.setdefault(dim, []).extend(plain_pairs(rows, path))
            continue
        columns = list(rows[0])
        available = dimensions_in(layout, columns)
        if name:
            dims = [name]
        elif wanted:
            known = PKU_DIMENSIONS if layout == "pku" else HELPSTEER_ATTRIBUTES
            dims = [d for d in wanted if d in known or d in columns]
        else:
            dims = available
        if not dims:
            asked = f"none of {wanted}" if wanted else "no known dimension column"
            raise DataError(f"dataset {path!r} has {asked} (columns: {', '.join(columns)}); set --dimensions")
        for dim in dims:
            if layout == "pku":
                found.setdefault(dim, []).extend(pku_pairs(rows, dim, path))
            else:
                found.setdefault(dim, []).extend(rating_pairs(rows, dim, min_rating_gap, path))
    order = wanted or list(found)
    result: dict[str, Pairs] = {}
    for dim in order:
        if dim not in found:
            raise DataError(
                f"dimension {dim!r} is in no dataset (found: {', '.join(found) or 'none'}); add --dataset {dim}=PATH"
            )
        pairs = found[dim]
        if not pairs:
            raise DataError(
                f"dimension {dim!r} has no pairs (all ties or unlabelled); check its column or lower --min_rating_gap"
            )
        if max_pairs is not None and len(pairs) > max_pairs:
            pairs = random.Random(seed).sample(pairs, max_pairs)
        result[dim] = pairs
    return result
