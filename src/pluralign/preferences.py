"""Preference vectors: validation, parsing, grids, and RiC's preference-to-reward mapping.

A preference is a weight per objective on the simplex (w_i >= 0, sum w_i = 1). Users write it as
``helpful=0.7,harmless=0.3``, as a dict, or as a list in objective order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pluralign.errors import PreferenceError

MAPPINGS = ("linf", "l2", "linear")


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


def preference_to_rewards(
    weights: Sequence[float],
    low: Sequence[float],
    high: Sequence[float],
    method: str = "linf",
) -> np.ndarray:
    """Map preference weights to the desired rewards RiC writes into the prompt (METHODS.md §1).

    - ``linf`` (the paper's rule): f_i = lo_i + min(1, K w_i) (hi_i - lo_i)
    - ``l2``: f_i = lo_i + (w_i / ||w||_2) (hi_i - lo_i)
    - ``linear``: f_i = lo_i + w_i (hi_i - lo_i)

    Values are returned unrounded; the tag formatter rounds them like the training tags.
    """
    w = validate_weights(weights)
    lo = np.asarray(low, dtype=np.float64)
    hi = np.asarray(high, dtype=np.float64)
    if lo.shape != w.shape or hi.shape != w.shape:
        raise PreferenceError(f"low/high must have {w.size} values, one per objective (got {lo.size} and {hi.size})")
    k = w.size
    if method == "linf":
        frac = np.minimum(1.0, k * w)
    elif method == "l2":
        frac = w / math.sqrt(float((w**2).sum()))
    elif method == "linear":
        frac = w
    else:
        raise PreferenceError(f"unknown mapping {method!r}; use one of {', '.join(MAPPINGS)}")
    return lo + frac * (hi - lo)


def infer_preference(*args, **kwargs) -> Preference:
    """A user's weights inferred from pairwise choices; see :mod:`pluralign.preference_inference` (lazy import)."""
    from pluralign.preference_inference import infer_preference as _infer

    return _infer(*args, **kwargs)


# RiC's diffusion mapping (ric_txt2img): desired rewards are quantiles of the training rewards.
QUANTILE_MAPPING = "quantile"
QUANTILE_TOP = 0.9999999
QUANTILE_TABLE_SIZE = 1001


def preference_to_quantiles(weights: Sequence[float], top: float = QUANTILE_TOP) -> np.ndarray:
    """Quantile levels RiC asks for at inference on diffusion models (METHODS.md §1).

    The dominant objective (largest weight, the first on ties) asks for its ``top``-quantile (0.9999999);
    every other objective i for its ``K * w_i``-quantile, capped at ``top``. So (0.5, 0.5) -> both at the
    top, one-hot -> (top, 0.0), and w_i = 0 -> the minimum of objective i.
    """
    w = validate_weights(weights)
    if not 0.0 < top <= 1.0:
        raise PreferenceError(f"top quantile must be in (0, 1], got {top}")
    levels = np.minimum(w.size * w, top)
    levels[int(np.argmax(w))] = top
    return levels


def quantile_table(values: Sequence[float], size: int = QUANTILE_TABLE_SIZE) -> list[float]:
    """``size`` evenly spaced quantiles (levels 0..1) of ``values``: enough to map any level later."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or not np.isfinite(v).all():
        raise PreferenceError("a quantile table needs at least one finite value")
    return [float(x) for x in np.quantile(v, np.linspace(0.0, 1.0, size))]


def preference_to_rewards_by_quantile(
    weights: Sequence[float], tables: Sequence[Sequence[float]], top: float = QUANTILE_TOP
) -> np.ndarray:
    """Desired rewards under the quantile mapping: objective i's value at level :func:`preference_to_quantiles`.

    ``tables[i]`` is :func:`quantile_table` of objective i's training rewards (z-scores for RiC's tags);
    levels between table entries are interpolated linearly, as ``numpy.quantile`` does between samples.
    """
    levels = preference_to_quantiles(weights, top)
    if len(tables) != levels.size:
        raise PreferenceError(f"got {len(tables)} quantile tables for {levels.size} objectives; give one per objective")
    out = []
    for level, table in zip(levels, tables):
        t = np.asarray(table, dtype=np.float64)
        out.append(float(np.interp(level, np.linspace(0.0, 1.0, t.size), t)))
    return np.asarray(out)
