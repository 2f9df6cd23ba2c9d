"""Preference grids for evaluation: the simplex lattice, RiC's 13 fixed K=3 points, or a points file.

``resolve_grid(spec, k, points=None)``:
- ``"lattice"`` (default): :func:`pluralign.preferences.weights.preference_grid` (K=2: 11 points; K>=3: simplex
  lattice, resolution ``points``);
- ``"ric13"``: the 13 points YangRui2015/RiC's ``evaluation.py`` uses for three objectives (its
  ``[0.33, 0.33, 0.33]`` is written as exact thirds so it lies on the simplex);
- a path to a file of points: JSON (a list of K-float lists) or text/CSV with one point per line
  (numbers separated by commas or spaces; ``#`` starts a comment). Each point must have K non-negative
  weights summing to 1 (within 0.02; rescaled to exactly 1).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pluralign.errors import ConfigError
from pluralign.preferences.weights import preference_grid

THIRD = 1.0 / 3.0
RIC_K3_POINTS: list[list[float]] = [
    [0.0, 0.0, 1.0],
    [0.0, 1.0, 0.0],
    [0.1, 0.1, 0.8],
    [0.1, 0.8, 0.1],
    [0.2, 0.2, 0.6],
    [0.2, 0.4, 0.4],
    [0.2, 0.6, 0.2],
    [THIRD, THIRD, THIRD],
    [0.4, 0.4, 0.2],
    [0.4, 0.2, 0.4],
    [0.6, 0.2, 0.2],
    [0.8, 0.1, 0.1],
    [1.0, 0.0, 0.0],
]
GRIDS = ("lattice", "ric13")


def _read_points(path: Path) -> list[list[float]]:
    text = path.read_text()
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--grid {path}: not valid JSON ({exc.msg}); write a list of weight lists") from exc
        if not isinstance(data, list) or not all(isinstance(r, list) for r in data):
            raise ConfigError(f"--grid {path}: expected a JSON list of weight lists, e.g. [[0.5, 0.5], [1, 0]]")
        rows = data
    else:
        rows = []
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                rows.append([x for x in re.split(r"[,\s]+", line) if x])
    try:
        return [[float(x) for x in r] for r in rows]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--grid {path}: every weight must be a number ({exc})") from exc


def resolve_grid(spec: str | None, k: int, points: int | None = None) -> list[list[float]]:
    """The evaluation preferences named by ``spec`` (see the module docstring) for K objectives."""
    if spec in (None, "", "lattice"):
        return preference_grid(k, points)
    if spec == "ric13":
        if k != 3:
            raise ConfigError(f"--grid ric13 is RiC's 13 points for 3 objectives; this model has {k}: use lattice")
        return [list(p) for p in RIC_K3_POINTS]
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"--grid {spec!r} is neither {' nor '.join(GRIDS)} nor an existing points file")
    grid = _read_points(path)
    if not grid:
        raise ConfigError(f"--grid {path}: no points in the file")
    for n, w in enumerate(grid, 1):
        if len(w) != k or any(x < 0 for x in w) or abs(sum(w) - 1.0) > 0.02:
            raise ConfigError(
                f"--grid {path}: point {n} {w} must have {k} non-negative weights summing to 1 (one per objective)"
            )
    return [[x / sum(w) for x in w] for w in grid]
