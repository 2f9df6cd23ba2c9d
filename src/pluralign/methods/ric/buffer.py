"""The offline part of RiC's online buffer (METHODS.md §1, step 5; reference ``merge_dataset``).

Each online iteration keeps the offline samples that pass the MORS filter with thresholds taken from the
OFFLINE data's own ``quantile`` per objective (not from the online batch, whose scores follow another
distribution), then draws a fresh random subset of them for this iteration.
"""

from __future__ import annotations

import numpy as np

from pluralign.methods.ric.mors import mors_accept, mors_thresholds


def offline_selection(
    z: np.ndarray, quantile: float, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of at most ``n`` offline samples drawn from those on the offline frontier, and the thresholds.

    ``z``: (N, K) z-scores of the offline samples. A sample passes iff for SOME objective its z-score is at
    least that objective's ``quantile`` over the offline data; ``rng`` draws the subset (seed it per
    iteration so each iteration sees another subset, reproducibly).
    """
    z = np.asarray(z, dtype=float)
    thresholds = mors_thresholds(z, quantile)
    passed = np.flatnonzero(mors_accept(z, thresholds))
    picked = rng.permutation(passed)[: max(0, int(n))]
    return np.sort(picked), thresholds
