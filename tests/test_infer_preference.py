"""infer_preference: weights recovered from a few simulated choices; one-line errors for bad contexts."""

from __future__ import annotations

import numpy as np
import pytest

from pluralign.errors import DataError, PreferenceError
from pluralign.objectives.base import Objective
from pluralign.objectives.set import ObjectiveSet
from pluralign.preferences.inference import infer_preference
from pluralign.preferences.weights import Preference


def _cosine(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _simulate(w: np.ndarray, n: int, rng: np.random.Generator, sharpness: float = 4.0) -> np.ndarray:
    """n choices of a BTL user with weights w over K z-scored objectives: rows are chosen - rejected."""
    a, b = rng.normal(size=(n, w.size)), rng.normal(size=(n, w.size))
    p_a = 1 / (1 + np.exp(-sharpness * (a - b) @ w))
    a_wins = rng.random(n) < p_a
    return np.where(a_wins[:, None], a - b, b - a)


def test_recovers_known_weights_from_ten_choices():
    rng = np.random.default_rng(0)
    names = ["helpful", "harmless", "humour"]
    cosines, uniform_cosines = [], []
    for _ in range(40):
        w = rng.dirichlet(np.ones(3) * 0.7)
        pref = infer_preference(_simulate(w, 10, rng), names)
        assert isinstance(pref, Preference) and pref.objectives == tuple(names)
        assert abs(sum(pref.weights) - 1) < 1e-6
        cosines.append(_cosine(pref.weights, w))
        uniform_cosines.append(_cosine(np.ones(3), w))
    print(f"mean cosine {np.mean(cosines):.3f} (uniform guess {np.mean(uniform_cosines):.3f}), min {min(cosines):.3f}")
    assert np.mean(cosines) >= 0.9
    assert np.mean(cosines) > np.mean(uniform_cosines) + 0.05


def test_more_choices_recover_better_and_prior_gives_uniform_without_signal():
    rng = np.random.default_rng(1)
    w = np.array([0.8, 0.2])
    few = [_cosine(infer_preference(_simulate(w, 3, rng), ["a", "b"]).weights, w) for _ in range(30)]
    many = [_cosine(infer_preference(_simulate(w, 40, rng), ["a", "b"]).weights, w) for _ in range(30)]
    assert np.mean(many) > np.mean(few) and np.mean(many) > 0.98
    flat = infer_preference(np.zeros((5, 2)), ["a", "b"])
    assert flat.weights == pytest.approx((0.5, 0.5), abs=1e-4)


class _Length(Objective):
    """Scores a response by its word count (stands in for a real reward source)."""

    def __init__(self, name: str, sign: float) -> None:
        self.name, self.sign = name, sign

    @property
    def identity(self) -> str:
        return f"length:{self.sign}"

    def score_batch(self, prompts, responses):
        return [self.sign * len(r.split()) for r in responses]


def test_context_of_texts_is_scored_with_the_objectives():
    objectives = ObjectiveSet([_Length("verbose", 1.0), _Length("concise", -1.0)])
    lengths = [1, 3, 5, 8, 12]
    objectives.fit_stats({"verbose": lengths, "concise": [-x for x in lengths]})
    context = [
        ("q", "a b c d e f g h", "a"),
        ("q", "a b c d e", "a b"),
        {"prompt": "q", "chosen": "x y z", "rejected": "x"},
    ]
    pref = infer_preference(context, objectives)
    assert pref.weights[0] > 0.7  # every choice picked the longer answer
    flipped = [
        (c["prompt"], c["rejected"], c["chosen"]) if isinstance(c, dict) else (c[0], c[2], c[1]) for c in context
    ]
    assert infer_preference(flipped, objectives).weights[1] > 0.7


def test_bad_contexts_raise_one_line_errors():
    objectives = ObjectiveSet([_Length("verbose", 1.0)])
    objectives.fit_stats({"verbose": [1, 2, 3]})
    cases = [
        ([], "context is empty"),
        ("q", "must be a list"),
        ([("q", "a")], "context item 0 is not a"),
        ([("q", "a", "b"), ("q", "a", 3)], "context item 1: rejected must be text"),
        ([{"prompt": "q", "chosen": "a"}], "context item 0 has no 'rejected'"),
        (np.zeros((2, 3)), "shape"),
    ]
    for context, message in cases:
        with pytest.raises(PreferenceError, match=message) as info:
            infer_preference(context, objectives)
        assert "\n" not in str(info.value)
    unfitted = ObjectiveSet([_Length("verbose", 1.0)])
    with pytest.raises(DataError, match="normalisation statistics"):
        infer_preference([("q", "a b", "a")], unfitted)
