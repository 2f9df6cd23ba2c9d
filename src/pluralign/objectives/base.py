"""The objective interface: score (prompt, response) pairs to one float each.

A prompt is text or a conversational list of messages, passed as it is: an objective that reads the
prompt renders messages the way it was trained (a Hugging Face or pluralign reward model through its
tokenizer's chat template, :func:`pluralign.models.truncation.render_pair`), never a flattened
``user: ...`` text it never saw.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any


class Objective(ABC):
    """A named reward source. Subclasses implement :meth:`score_batch`; :meth:`score` batches by length."""

    name: str
    batch_size: int = 32

    @property
    @abstractmethod
    def identity(self) -> str:
        """A string that changes whenever the scores could change (used as the scoring-cache key)."""

    @abstractmethod
    def score_batch(self, prompts: Sequence[Any], responses: Sequence[str]) -> list[float]:
        """Score one batch of pairs (prompts: text or lists of messages)."""

    def score(self, prompts: Sequence[Any], responses: Sequence[str]) -> list[float]:
        """Score every pair, in length-sorted batches (less padding), returned in input order."""
        from pluralign.data.loading import prompt_text

        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        size = [len(prompt_text(p)) + len(r) for p, r in zip(prompts, responses)]
        order = sorted(range(len(prompts)), key=size.__getitem__)
        out: list[float] = [0.0] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            scores = self.score_batch([prompts[i] for i in idx], [responses[i] for i in idx])
            for i, s in zip(idx, scores):
                out[i] = float(s)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
