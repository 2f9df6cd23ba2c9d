"""MOSLIM's reward mapping (METHODS.md §2) against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from pluralign.errors import ConfigError, PreferenceError
from pluralign.methods.moslim.mapping import RewardMapping, moslim_reward, preference_to_levels

# two samples; head 0 has 3 classes, head 1 has 2
PROBS = [np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]]), np.array([[0.9, 0.1], [0.4, 0.6]])]
TARGETS = np.array([[1, 0], [2, 1]])
MASK = np.array([[1.0, 1.0], [1.0, 0.0]])  # sample B leaves objective 1 unspecified
CLASS_STATS = {
    "a": [{"mean": 0.3, "std": 0.1}, {"mean": 0.4, "std": 0.2}, {"mean": 0.3, "std": 0.1}],
    "b": [{"mean": 0.5, "std": 0.25}, {"mean": 0.5, "std": 0.25}],
}


def test_reward_without_normalisation_is_mean_of_target_probabilities():
    r = RewardMapping(["a", "b"], [3, 2], stats="none")(PROBS, TARGETS, MASK)
    # A: (0.5 + 0.9) / 2 ; B: (0.1 + masked) / 2  (k = number of objectives, not of specified ones)
    np.testing.assert_allclose(r, [0.7, 0.05])


def test_reward_with_head_class_statistics():
    r = RewardMapping(["a", "b"], [3, 2], stats="head", class_stats=CLASS_STATS)(PROBS, TARGETS, MASK)
    # A: ((0.5-0.4)/0.2 + (0.9-0.5)/0.25) / 2 = (0.5 + 1.6) / 2 ; B: ((0.1-0.3)/0.1) / 2
    np.testing.assert_allclose(r, [1.05, -1.0])


def test_reward_with_running_batch_statistics_accumulates_across_calls():
    mapping = RewardMapping(["a", "b"], [3, 2], stats="batch")
    r = mapping(PROBS, TARGETS, MASK)
    # head a sees 0.5 and 0.1: mean 0.3, std 0.2; head b sees only 0.9: z = 0
    np.testing.assert_allclose(r, [0.5, -0.5], atol=1e-9)
    probs_c = [np.array([[0.7, 0.2, 0.1]]), np.array([[0.5, 0.5]])]
    r_c = mapping(probs_c, np.array([[0, 0]]), np.array([[1.0, 0.0]]))
    # head a has now seen 0.5, 0.1, 0.7: mean 0.43333, std 0.24944 -> (0.7 - 0.43333) / 0.24944 / 2
    np.testing.assert_allclose(r_c, [0.53452], atol=1e-4)


def test_weights_replace_the_mask():
    w = np.array([[0.25, 0.75], [1.0, 0.0]])
    r = moslim_reward(PROBS, TARGETS, w, np.zeros((2, 2)), np.ones((2, 2)))
    np.testing.assert_allclose(r, [(0.25 * 0.5 + 0.75 * 0.9) / 2, 0.1 / 2])


def test_reward_rises_when_the_target_class_gets_likelier():
    mapping = RewardMapping(["a", "b"], [3, 2], stats="head", class_stats=CLASS_STATS)
    low = mapping([np.array([[0.8, 0.1, 0.1]]), np.array([[0.5, 0.5]])], np.array([[2, 1]]), np.ones((1, 2)))
    high = mapping([np.array([[0.1, 0.1, 0.8]]), np.array([[0.5, 0.5]])], np.array([[2, 1]]), np.ones((1, 2)))
    assert high[0] > low[0]


def test_head_stats_need_the_reward_models_class_statistics():
    with pytest.raises(ConfigError, match="class statistics for head 'b'"):
        RewardMapping(["a", "b"], [3, 2], stats="head", class_stats={"a": CLASS_STATS["a"]})
    with pytest.raises(ConfigError, match="stats"):
        RewardMapping(["a"], [3], stats="median")


def test_out_of_range_target_is_an_error():
    with pytest.raises(ValueError, match="outside 0..2"):
        moslim_reward(PROBS, np.array([[3, 0], [0, 0]]), np.ones((2, 2)), np.zeros((2, 2)), np.ones((2, 2)))


def test_preference_to_levels():
    assert preference_to_levels([0.3, 0.7], [5, 5], "linear") == [1, 3]
    assert preference_to_levels([0.3, 0.7], [5, 5], "linf") == [2, 4]
    assert preference_to_levels([1.0, 0.0], [5, 3], "linear") == [4, 0]
    assert preference_to_levels([0.5, 0.5], [5, 5], "linear") == [2, 2]
    with pytest.raises(PreferenceError):
        preference_to_levels([0.5, 0.6], [5, 5])
    with pytest.raises(PreferenceError, match="unknown preference mapping"):
        preference_to_levels([0.5, 0.5], [5, 5], "cubic")
