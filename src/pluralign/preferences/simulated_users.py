"""Simulated users with real tastes (METHODS.md §8): each user is a random mixture of K real scorers.

PersonalLLM's construction (namkoong-lab/PersonalLLM): user u has weights ``lambda_u ~ Dirichlet(alpha 1_K)``
over K objectives; its reward of a response is ``r_u = sum_k lambda_uk z_k`` with ``z_k`` objective k's
z-score (statistics fitted on the response pool); between responses a and b it picks a with probability
``sigmoid((r_u(a) - r_u(b)) / tau)`` (Bradley-Terry; ``tau = 0``: always the higher reward).

``alpha < 1`` gives users who mostly follow one or two objectives (a more varied population); the default
0.05 is PersonalLLM's own (its persona scripts draw with 0.05 or 0.01: most users follow one objective). ``tau`` is
how noisy a choice is in z-units (0.25: a pair whose rewards differ by 0.25 is chosen 73 / 27). Because
every user's weights are known, what a few-shot method infers from the choices can be checked against them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pluralign.errors import PreferenceError


@dataclass
class SimulatedUsers:
    """N users' weights over K named objectives, and how they choose (``tau``; see the module docstring)."""

    weights: np.ndarray  # (N, K), rows on the simplex
    names: tuple[str, ...]
    tau: float = 0.25
    alpha: float = 0.05

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=np.float64)
        self.names = tuple(self.names)
        if self.weights.ndim != 2 or self.weights.shape[1] != len(self.names):
            raise PreferenceError(
                f"user weights must have shape (N, {len(self.names)}), one column per objective; got {self.weights.shape}"
            )
        if (self.weights < 0).any() or not np.allclose(self.weights.sum(axis=1), 1.0, atol=1e-6):
            raise PreferenceError("every user's weights must be >= 0 and sum to 1")
        if self.tau < 0:
            raise PreferenceError(f"tau must be >= 0 (0: deterministic choices), got {self.tau}")

    @classmethod
    def draw(cls, n: int, names: Sequence[str], alpha: float = 0.05, tau: float = 0.25, seed: int = 0) -> SimulatedUsers:
        """``n`` users with weights drawn from a symmetric Dirichlet(``alpha``) over ``names``."""
        if n < 1:
            raise PreferenceError(f"the number of users must be at least 1, got {n}")
        if alpha <= 0:
            raise PreferenceError(f"alpha (Dirichlet concentration) must be > 0, got {alpha}")
        if len(names) < 2:
            raise PreferenceError("simulated users need at least two objectives to mix")
        weights = np.random.default_rng(seed).dirichlet(np.full(len(names), float(alpha)), size=n)
        return cls(weights, tuple(names), tau, alpha)

    def __len__(self) -> int:
        return int(self.weights.shape[0])

    def rewards(self, z: np.ndarray) -> np.ndarray:
        """(N, M) rewards of M responses whose z-scores are ``z`` (M, K), for every user."""
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != len(self.names):
            raise PreferenceError(f"z-scores must have shape (M, {len(self.names)}); got {z.shape}")
        return self.weights @ z.T

    def margins(self, z_a: np.ndarray, z_b: np.ndarray) -> np.ndarray:
        """(N, P) reward differences r_u(a) - r_u(b) over P pairs of z-score rows."""
        return self.rewards(z_a) - self.rewards(z_b)

    def choose(self, z_a: np.ndarray, z_b: np.ndarray, seed: int = 0) -> np.ndarray:
        """(N, P) True where the user picks a over b: Bernoulli(sigmoid(margin / tau)); ties at tau = 0
        are broken by a fair coin."""
        m = self.margins(z_a, z_b)
        u = np.random.default_rng(seed).random(m.shape)
        if self.tau == 0:
            return np.where(m == 0, u < 0.5, m > 0)
        return u < 1.0 / (1.0 + np.exp(-m / self.tau))

    def oracle(self, z_a: np.ndarray, z_b: np.ndarray) -> np.ndarray:
        """(N, P) the choice an observer who knows each user's weights predicts: a when r_u(a) > r_u(b)."""
        return self.margins(z_a, z_b) > 0

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "alpha": self.alpha, "tau": self.tau, "weights": self.weights.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimulatedUsers:
        return cls(np.asarray(data["weights"]), tuple(data["names"]), float(data["tau"]), float(data["alpha"]))


def pairs_within_groups(groups: Sequence[Any]) -> np.ndarray:
    """(P, 2) index pairs (i, j), i < j, of items that share a group (responses to the same prompt)."""
    by_group: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    out = [(a, b) for members in by_group.values() for n, a in enumerate(members) for b in members[n + 1 :]]
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two weight vectors (1: the same direction)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))
