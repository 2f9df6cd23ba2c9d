"""The objective interface: score (prompt, response) pairs to one float each."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence


class Objective(ABC):
    """A named reward source. Subclasses implement :meth:`score_batch`; :meth:`score` batches by length."""

    name: str
    batch_size: int = 32

    @property
    @abstractmethod
    def identity(self) -> str:
        """A string that changes whenever the scores could change (used as the scoring-cache key)."""

    @abstractmethod
    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Score one batch of pairs."""

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Score every pair, in length-sorted batches (less padding), returned in input order."""
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(responses[i]))
        out: list[float] = [0.0] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            scores = self.score_batch([prompts[i] for i in idx], [responses[i] for i in idx])
            for i, s in zip(idx, scores):
                out[i] = float(s)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
