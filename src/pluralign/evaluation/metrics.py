"""Front quality measures (METHODS.md §6): hypervolume with one fixed reference point, steerability, range."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_REFERENCE_Z = -3.0


def hypervolume(points_z: np.ndarray, reference_z: Sequence[float]) -> float:
    """Hypervolume dominated by ``points_z`` (maximised, z-units) above ``reference_z`` (moocore)."""
    import moocore

    pts = np.asarray(points_z, dtype=float)
    ref = np.asarray(reference_z, dtype=float)
    pts = pts[(pts > ref).all(axis=1)]  # points that do not dominate the reference add nothing
    if pts.size == 0:
        return 0.0
    return float(moocore.hypervolume(pts, ref=ref, maximise=True))


# scores closer than this (relative) are the same answer's, not a movement of the front
SAME_SCORE_RTOL = 1e-6


def steerability(weights: np.ndarray, achieved: np.ndarray) -> list[float | None]:
    """Spearman correlation of w_i with the achieved mean of objective i, per objective.

    ``None`` where it is undefined: a method whose output does not change across the grid, up to float
    rounding (the same answers scored in differently padded batches differ in the 8th digit, which would
    otherwise rank as a correlation).
    """
    from scipy.stats import spearmanr

    w, a = np.asarray(weights, dtype=float), np.asarray(achieved, dtype=float)
    out: list[float | None] = []
    for i in range(w.shape[1]):
        flat = np.ptp(a[:, i]) <= SAME_SCORE_RTOL * max(1.0, float(np.abs(a[:, i]).max()))
        if np.ptp(w[:, i]) == 0 or flat:
            out.append(None)
            continue
        rho = spearmanr(w[:, i], a[:, i]).statistic
        out.append(None if np.isnan(rho) else float(rho))
    return out


def data_spread(stats) -> float | None:
    """5th-95th percentile spread of an objective in a reference sample (an ``ObjectiveStats``)."""
    q = getattr(stats, "quantiles", None) or {}
    if "0.05" not in q or "0.95" not in q:
        return None
    return float(q["0.95"] - q["0.05"])


def objective_range(achieved: np.ndarray, spreads: Sequence[float | None]) -> list[float | None]:
    """Per objective: the span of its achieved means over the grid divided by its data spread.

    Spearman steerability only measures order, so a method that barely moves can score 1.0; the range
    says how far it moves (1.0 = as far as the 5th-95th percentile spread of the training data).
    ``None`` where the spread is unknown or zero.
    """
    a = np.asarray(achieved, dtype=float)
    out: list[float | None] = []
    for i, spread in enumerate(spreads):
        out.append(None if not spread or spread <= 0 else float(np.ptp(a[:, i]) / spread))
    return out
