"""A trained multi-head reward model as a scorer: class probabilities per head, and scalar views of them.

``pluralign.load_reward_model(dir)`` returns :class:`MultiHeadRewardScorer` through :func:`load`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.errors import ConfigError
from pluralign.models.manifest import Manifest
from pluralign.reward_models.multihead.model import MultiHeadSpec, load_multihead

REDUCTIONS = ("expected", "normalized", "class_prob", "argmax")


class MultiHeadRewardScorer:
    """Scores (prompt, response) pairs with every head of a multi-head classification reward model."""

    def __init__(self, model_dir: str | Path, device: str | None = None, batch_size: int = 64) -> None:
        import torch

        self.model_dir = Path(model_dir)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, self.tokenizer = load_multihead(self.model_dir, self.device)
        self.batch_size = batch_size

    @property
    def spec(self) -> MultiHeadSpec:
        return self.model.spec

    @property
    def objectives(self) -> list[str]:
        return list(self.spec.objectives)

    def probabilities(self, prompts: Sequence[str], responses: Sequence[str]) -> dict[str, np.ndarray]:
        """``{head name: (N, K_i) class probabilities}``."""
        from pluralign.reward_models.multihead.trainer import predict_probabilities

        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        probs = predict_probabilities(self.model, self.tokenizer, list(prompts), list(responses), self.batch_size)
        return dict(zip(self.spec.objectives, probs))

    def head_scores(
        self,
        prompts: Sequence[str],
        responses: Sequence[str],
        reduce: str = "normalized",
        target_class: int | None = None,
    ) -> dict[str, np.ndarray]:
        """One float per pair and head: ``expected`` class index, ``normalized`` (expected / (K_i - 1), in
        [0, 1]), ``argmax`` class, or ``class_prob`` (the probability of ``target_class``)."""
        if reduce not in REDUCTIONS:
            raise ConfigError(f"reduce {reduce!r} is not one of {REDUCTIONS}")
        out = {}
        for name, p in self.probabilities(prompts, responses).items():
            k = p.shape[1]
            if reduce == "class_prob":
                if target_class is None or not 0 <= target_class < k:
                    raise ConfigError(f"reduce='class_prob' needs target_class in 0..{k - 1} for head {name!r}")
                out[name] = p[:, target_class]
            elif reduce == "argmax":
                out[name] = p.argmax(1).astype(np.float64)
            else:
                expected = p @ np.arange(k, dtype=np.float64)
                out[name] = expected / (k - 1) if reduce == "normalized" else expected
        return out

    def score(
        self, prompts: Sequence[str], responses: Sequence[str], context: Any = None, head: str | None = None
    ) -> list[float]:
        """The contract's scalar: a head's normalised expected intensity, or the mean over heads."""
        if context is not None:
            raise ConfigError("a multi-head reward model is not conditioned on context; pass context=None")
        scores = self.head_scores(prompts, responses, reduce="normalized")
        if head is not None:
            self.spec.head_index(head)
            return scores[head].tolist()
        return np.mean(np.stack(list(scores.values()), axis=1), axis=1).tolist()


def load(model_dir: Path, manifest: Manifest, **kwargs: Any) -> MultiHeadRewardScorer:
    """``pluralign.load_reward_model`` hook."""
    return MultiHeadRewardScorer(model_dir, **kwargs)
