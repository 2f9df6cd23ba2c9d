"""MODPOConfig: DPO on one dimension plus the margin objectives and the weight vectors to train."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pluralign.errors import ConfigError, PreferenceError
from pluralign.preferences.weights import Preference
from pluralign.training.dpo_stage import DimensionDPOConfig


@dataclass
class MODPOConfig(DimensionDPOConfig):
    """Options of ``pluralign train modpo``.

    The trained objective is the single dimension of ``dataset`` / ``dimensions``; every ``objective`` is a
    margin: an objective spec (``sentiment``, ``name=org/rm``, ``name=module:fn``) or the implicit DPO
    reward of a trained model dir (``name=implicit:DIR``). Each weight vector is ``w_0, w_1, ...`` in the
    order [trained objective, margin objectives...] (or ``name=w,...``); one model is trained per vector.
    """

    objective: list[str] = field(
        default_factory=list,
        metadata={"help": "margin objective, repeatable: sentiment | name=org/rm | name=module:fn | name=implicit:DIR"},
    )
    weights: list[str] = field(
        default_factory=lambda: ["1,0", "0.75,0.25", "0.5,0.5", "0.25,0.75"],
        metadata={
            "help": "weight vectors to train, e.g. 0.5,0.5 (trained objective first) or helpful=0.5,harmless=0.5"
        },
    )
    normalize_margin: bool = field(
        default=True, metadata={"help": "z-score objective rewards (statistics of the training responses)"}
    )
    score_batch_size: int = field(default=256, metadata={"help": "pairs per scoring chunk (committed to the cache)"})

    def weight_vectors(self, names: list[str]) -> list[np.ndarray]:
        """Every weight vector as an array over ``names``; the trained objective's weight must be > 0."""
        if not self.weights:
            raise ConfigError("--weights is empty; give at least one weight vector, e.g. --weights 0.5,0.5")
        out = []
        for text in self.weights:
            value: Any = text
            if "=" not in str(text):
                value = [float(x) for x in str(text).replace(" ", "").split(",") if x]
            try:
                w = np.array(Preference.from_any(value, names).weights)
            except PreferenceError as exc:
                raise ConfigError(f"--weights {text!r}: {exc}") from exc
            if w[0] <= 0:
                raise ConfigError(
                    f"--weights {text!r}: the weight of the trained objective {names[0]!r} must be > 0 (MODPO divides by it)"
                )
            out.append(w)
        return out
