"""Preference vectors: validation, parsing, grids, and RiC's preference-to-reward mapping.

A preference is a weight per objective on the simplex (w_i >= 0, sum w_i = 1). Users write it as
``helpful=0.7,harmless=0.3``, as a dict, or as a list in objective order.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pluralign.errors import PreferenceError


def validate_weights(weights: Sequence[float], k: int | None = None, normalise: bool = False) -> np.ndarray:
    """Return ``weights`` as a float array after checking they form a preference.

    Raises :class:`PreferenceError` (a ValueError) for a wrong length, a NaN, a negative or an all-zero
    vector. With ``normalise`` the weights are divided by their sum; otherwise they must sum to 1.
    """
    try:
        w = np.asarray([float(x) for x in weights], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PreferenceError(f"preference weights must be numbers, got {list(weights)!r}") from exc
    if w.ndim != 1 or w.size == 0:
        raise PreferenceError("preference must be a non-empty list of weights, one per objective")
    if k is not None and w.size != k:
        raise PreferenceError(
            f"preference has {w.size} weights but the model has {k} objectives; give one per objective"
        )
    if np.isnan(w).any():
        raise PreferenceError(
            f"preference weight {int(np.flatnonzero(np.isnan(w))[0])} is NaN; give a number in [0, 1]"
        )
    if np.isinf(w).any():
        raise PreferenceError("preference weights must be finite numbers in [0, 1]")
    if (w < 0).any():
        i = int(np.flatnonzero(w < 0)[0])
        raise PreferenceError(f"preference weight {i} is negative ({w[i]:g}); weights must be >= 0")
    total = float(w.sum())
    if total <= 0:
        raise PreferenceError("preference weights are all zero; at least one weight must be positive")
    if normalise:
        return w / total
    if abs(total - 1.0) > 1e-3:
        raise PreferenceError(f"preference weights sum to {total:g}, not 1; rescale them so they sum to 1")
    return w


@dataclass(frozen=True)
class Preference:
    """Validated weights over named objectives, in the model's objective order."""

    objectives: tuple[str, ...]
    weights: tuple[float, ...]

    @classmethod
    def from_any(
        cls, value: Preference | Mapping[str, float] | Sequence[float] | str, objectives: Sequence[str]
    ) -> Preference:
        """Build a preference for ``objectives`` from a dict, list, string or Preference.

        Dict and string forms must name every objective exactly once; weights that do not sum to one
        are an error rather than silently rescaled, except for the string form where a total of 1 is
        also required.
        """
        objectives = tuple(objectives)
        if isinstance(value, Preference):
            if value.objectives != objectives:
                value = cls.from_any(dict(zip(value.objectives, value.weights)), objectives)
            return value
        if isinstance(value, str):
            value = parse_preference(value)
        if isinstance(value, Mapping):
            unknown = [n for n in value if n not in objectives]
            if unknown:
                raise PreferenceError(
                    f"unknown objective {unknown[0]!r} in preference; the model's objectives are {list(objectives)}"
                )
            missing = [n for n in objectives if n not in value]
            if missing:
                raise PreferenceError(
                    f"preference has no weight for objective {missing[0]!r}; give a weight for each of {list(objectives)}"
                )
            weights = [value[n] for n in objectives]
        else:
            weights = list(value)
        w = validate_weights(weights, k=len(objectives))
        return cls(objectives, tuple(float(x) for x in w))

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.objectives, self.weights))

    def corner(self) -> Preference:
        """All weight on the largest weight's objective (split equally among tied largest weights).

        The preference that serves a user best in expectation when a policy's rewards are linear (or convex)
        in its weights and this preference is the posterior mean of the user's weights: the user's expected
        reward ``E[w] . R(v)`` is then largest at a corner ``v`` (docs/personalisation.md: Rewarded Soups
        driven by the corner of an inferred preference serves users better than driven by the preference).
        """
        w = np.asarray(self.weights, dtype=np.float64)
        top = np.isclose(w, w.max(), rtol=0.0, atol=1e-12)
        return Preference(self.objectives, tuple(float(x) for x in top / top.sum()))

    def __str__(self) -> str:
        return ",".join(f"{n}={w:g}" for n, w in zip(self.objectives, self.weights))


def parse_preference(text: str) -> dict[str, float]:
    """Parse ``"helpful=0.7,harmless=0.3"`` into a dict; errors name the bad item."""
    out: dict[str, float] = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        if "=" not in item:
            raise PreferenceError(f"preference item {item!r} is not name=weight; write e.g. helpful=0.7,harmless=0.3")
        name, _, raw = item.partition("=")
        name = name.strip()
        try:
            out[name] = float(raw)
        except ValueError as exc:
            raise PreferenceError(f"preference weight for {name!r} is {raw!r}, not a number") from exc
        if name in out and list(out).count(name) > 1:
            raise PreferenceError(f"objective {name!r} appears twice in the preference")
    if not out:
        raise PreferenceError("preference is empty; write e.g. helpful=0.7,harmless=0.3")
    return out


def preference_grid(k: int, points: int | None = None) -> list[list[float]]:
    """Evaluation grid on the simplex: 11 points (step 0.1) for K=2, a simplex lattice for K>=3.

    ``points`` sets the lattice resolution H (weights are multiples of 1/H); the defaults are H=10 for
    K=2 and H=4 for K>=3 (15 points for K=3), close to RiC's 13 fixed points.
    """
    if k < 1:
        raise PreferenceError("a preference grid needs at least one objective")
    if k == 1:
        return [[1.0]]
    h = points if points is not None else (10 if k == 2 else 4)
    grid = []
    for combo in itertools.product(range(h + 1), repeat=k - 1):
        if sum(combo) <= h:
            counts = list(combo) + [h - sum(combo)]
            grid.append([c / h for c in counts])
    if k == 2:
        grid.sort(key=lambda w: w[0])
    return grid












