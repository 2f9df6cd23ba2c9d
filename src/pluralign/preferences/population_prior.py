"""A population's prior over preference weights, learnt from other users' choices (empirical Bayes).

``infer_preference``'s default prior pulls every user toward equal weights. That is right for a population
of users who mix their objectives, and wrong for one where most users follow one objective (PersonalLLM's
Dirichlet(0.05) personas): ten choices then give weights between the corners that serve nobody. Like NP-BTL,
which learns across training users what a few choices of a new user mean, :class:`PopulationPrior` learns
the population from training users' choices alone (never their weights):

- the model is the one ``infer_preference`` fits, ``P(chosen > rejected) = sigmoid(s * w . dz)``, with the
  weights ``w ~ Dirichlet(alpha 1_K)`` over the population;
- :meth:`PopulationPrior.fit` picks ``alpha`` and the choice sharpness ``s`` that maximise the marginal
  likelihood of tasks of ``context`` choices drawn from each training user (Monte Carlo over prior draws);
- :meth:`PopulationPrior.posterior_mean` is a new user's weights given their choices: the posterior mean
  under that prior, which goes to a corner when the choices point there and stays between corners when they
  do not. No choices give the prior mean, the uniform preference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from pluralign.errors import PreferenceError

ALPHAS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 20.0)
SCALES = (1.0, 2.0, 4.0, 8.0, 16.0)


def _log_likelihoods(diffs: np.ndarray, draws: np.ndarray, scale: float) -> np.ndarray:
    """(M,) log-likelihood of one user's (n, K) choices under each of M weight draws."""
    return -np.logaddexp(0.0, -scale * (draws @ diffs.T)).sum(axis=1)


def _logmeanexp(x: np.ndarray) -> float:
    top = float(x.max())
    return top + float(np.log(np.exp(x - top).mean()))


@dataclass(frozen=True)
class PopulationPrior:
    """Dirichlet(``alpha``) weights over ``k`` objectives and choice sharpness ``scale`` (module docstring)."""

    alpha: float
    scale: float
    k: int
    samples: int = 20000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.alpha <= 0 or self.scale <= 0 or self.k < 2 or self.samples < 1:
            raise PreferenceError(
                f"a population prior needs alpha > 0, scale > 0, k >= 2 objectives and samples >= 1; got "
                f"alpha={self.alpha}, scale={self.scale}, k={self.k}, samples={self.samples}"
            )

    @cached_property
    def draws(self) -> np.ndarray:
        """(samples, k) weights from the prior, drawn once (``seed``)."""
        w = np.random.default_rng(self.seed).dirichlet(np.full(self.k, float(self.alpha)), size=self.samples)
        w = np.nan_to_num(w)  # very small alphas can underflow every coordinate of a draw
        w[w.sum(axis=1) == 0] = 1.0 / self.k
        return w / w.sum(axis=1, keepdims=True)

    def posterior_mean(self, diffs: np.ndarray) -> np.ndarray:
        """A user's weights given their (n, K) signed z-score differences chosen - rejected."""
        diffs = np.asarray(diffs, dtype=np.float64).reshape(-1, self.k)
        if len(diffs) == 0:
            return np.full(self.k, 1.0 / self.k)
        ll = _log_likelihoods(diffs, self.draws, self.scale)
        p = np.exp(ll - ll.max())
        w = p @ self.draws / p.sum()
        return w / w.sum()

    def log_evidence(self, tasks: Sequence[np.ndarray]) -> float:
        """Sum over ``tasks`` (each one user's (n, K) choices) of the log marginal likelihood."""
        return float(_evidence(tasks, self.draws, [self.scale])[0])

    @classmethod
    def fit(
        cls,
        users: Sequence[np.ndarray],
        context: int = 10,
        tasks_per_user: int = 10,
        alphas: Sequence[float] = ALPHAS,
        scales: Sequence[float] = SCALES,
        samples: int = 20000,
        seed: int = 0,
    ) -> PopulationPrior:
        """The (alpha, scale) on the grid whose prior best explains tasks of ``context`` choices of each of
        ``users`` (each a (P_u, K) array of signed differences), by marginal likelihood."""
        users = [np.asarray(u, dtype=np.float64) for u in users if len(u)]
        if not users:
            raise PreferenceError("fitting a population prior needs the choices of at least one user")
        k = users[0].shape[1]
        rng = np.random.default_rng(seed)
        tasks = [u[rng.permutation(len(u))[:context]] for u in users for _ in range(tasks_per_user)]
        fit_draws = min(samples, 4096)  # enough for the evidence of a few choices; the posterior uses ``samples``
        scored = [
            (float(e), a, s)
            for a in alphas
            for s, e in zip(scales, _evidence(tasks, cls(a, 1.0, k, fit_draws, seed).draws, scales))
        ]
        _, alpha, scale = max(scored)
        return cls(alpha, scale, k, samples, seed)


def _evidence(tasks: Sequence[np.ndarray], draws: np.ndarray, scales: Sequence[float]) -> np.ndarray:
    """Per scale: the summed log marginal likelihood of ``tasks`` under the weight ``draws``."""
    out = np.zeros(len(scales))
    for task in tasks:
        m = draws @ task.T  # (M, n) margins
        for i, s in enumerate(scales):
            out[i] += _logmeanexp(-np.logaddexp(0.0, -s * m).sum(axis=1))
    return out
