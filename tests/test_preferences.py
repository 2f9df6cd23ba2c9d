import math

import numpy as np
import pytest

from pluralign.errors import ConfigError, PreferenceError
from pluralign.preferences.rewards import middle_floor_flags, preference_to_rewards
from pluralign.preferences.weights import Preference, parse_preference, preference_grid

LO, HI = [-2.0, -1.0], [3.0, 1.0]


def test_linf_matches_paper_rule():
    # K=2, w1 >= 0.5: f1 = hi1, f2 = lo2 + 2(1-w1)(hi2-lo2)
    f = preference_to_rewards([0.7, 0.3], LO, HI, "linf")
    assert f[0] == pytest.approx(3.0)
    assert f[1] == pytest.approx(-1.0 + 2 * 0.3 * 2.0)


@pytest.mark.parametrize(
    "w,expected",
    [([0.5, 0.5], [3.0, 1.0]), ([1.0, 0.0], [3.0, -1.0]), ([0.0, 1.0], [-2.0, 1.0])],
)
def test_linf_edge_cases(w, expected):
    np.testing.assert_allclose(preference_to_rewards(w, LO, HI), expected)


def test_l2_and_linear():
    w = [0.6, 0.4]
    norm = math.sqrt(0.36 + 0.16)
    np.testing.assert_allclose(preference_to_rewards(w, LO, HI, "l2"), [-2 + 0.6 / norm * 5, -1 + 0.4 / norm * 2])
    np.testing.assert_allclose(preference_to_rewards(w, LO, HI, "linear"), [-2 + 0.6 * 5, -1 + 0.4 * 2])


@pytest.mark.parametrize(
    "w,expected",
    [([1.0, 0.0], [3.0, 0.0]), ([0.75, 0.25], [3.0, 0.5]), ([0.5, 0.5], [3.0, 1.0]), ([0.0, 1.0], [0.5, 1.0])],
)
def test_linf_mid_asks_a_zero_weight_for_the_middle_not_the_lowest(w, expected):
    """``linf_mid`` is ``linf`` between each objective's middle and top: the other objective of a one-hot
    preference is asked for its middle (``linf``: its lowest), and both are at the top at (0.5, 0.5)."""
    np.testing.assert_allclose(preference_to_rewards(w, LO, HI, "linf_mid"), expected)


@pytest.mark.parametrize(
    "w,expected",
    [([1.0, 0.0], [3.0, 0.0]), ([0.75, 0.25], [3.0, 0.5]), ([0.5, 0.5], [3.0, 1.0]), ([0.0, 1.0], [-2.0, 1.0])],
)
def test_floor_at_middle_raises_only_the_flagged_objectives_lowest_ask(w, expected):
    """Flagging b alone: a one-hot a asks b for its middle (0), not its lowest (-1), while a one-hot b still
    asks a for its lowest (-2); ``linf_mid`` is every objective flagged."""
    np.testing.assert_allclose(preference_to_rewards(w, LO, HI, "linf", [False, True]), expected)
    np.testing.assert_allclose(
        preference_to_rewards(w, LO, HI, "linf", [True, True]), preference_to_rewards(w, LO, HI, "linf_mid")
    )


def test_floor_flags_name_objectives_and_refuse_an_unknown_one():
    assert middle_floor_flags(["a", "b"], ["b"]) == [False, True] and middle_floor_flags(["a", "b"], []) == [False, False]
    with pytest.raises(ConfigError, match="floor_at_middle 'c' is not an objective here; use one of a, b"):
        middle_floor_flags(["a", "b"], ["c"])
    with pytest.raises(PreferenceError, match="floor_at_middle must have 2 flags"):
        preference_to_rewards([0.5, 0.5], LO, HI, "linf", [True])


def test_unrounded_output():
    f = preference_to_rewards([0.33, 0.67], [0.0, 0.0], [1.0, 1.0], "linear")
    assert f[0] == pytest.approx(0.33)


@pytest.mark.parametrize(
    "w,msg",
    [([-0.1, 1.1], "negative"), ([float("nan"), 1.0], "NaN"), ([0.0, 0.0], "all zero"), ([1.0], "2 objectives")],
)
def test_invalid_weights_raise_value_error(w, msg):
    k = 2 if msg == "2 objectives" else None
    with pytest.raises(ValueError, match=msg):
        if k:
            Preference.from_any(w, ["a", "b"])
        else:
            preference_to_rewards(w, LO, HI)


def test_unknown_mapping():
    with pytest.raises(PreferenceError, match="unknown mapping"):
        preference_to_rewards([0.5, 0.5], LO, HI, "cubic")


def test_preference_from_string_and_dict():
    p = Preference.from_any("harmless=0.3,helpful=0.7", ["helpful", "harmless"])
    assert p.weights == (0.7, 0.3)
    assert str(p) == "helpful=0.7,harmless=0.3"
    with pytest.raises(PreferenceError, match="unknown objective 'funny'"):
        Preference.from_any({"helpful": 0.5, "funny": 0.5}, ["helpful", "harmless"])
    with pytest.raises(PreferenceError, match="no weight for objective 'harmless'"):
        Preference.from_any({"helpful": 1.0}, ["helpful", "harmless"])
    with pytest.raises(PreferenceError, match="sum to"):
        Preference.from_any([0.5, 0.7], ["helpful", "harmless"])


def test_parse_errors_name_the_item():
    assert parse_preference("a=0.25, b=0.75") == {"a": 0.25, "b": 0.75}
    with pytest.raises(PreferenceError, match="not name=weight"):
        parse_preference("a0.5")
    with pytest.raises(PreferenceError, match="not a number"):
        parse_preference("a=high")


def test_grids():
    g2 = preference_grid(2)
    assert len(g2) == 11 and g2[0] == [0.0, 1.0] and g2[-1] == [1.0, 0.0]
    g3 = preference_grid(3)
    assert len(g3) == 15
    for w in g3:
        assert sum(w) == pytest.approx(1.0) and min(w) >= 0
    assert len({tuple(w) for w in g3}) == len(g3)


def test_the_corner_of_a_preference_puts_all_weight_on_its_largest_weight():
    p = Preference.from_any([0.14, 0.79, 0.05, 0.02], ["a", "b", "c", "d"])
    assert p.corner() == Preference(p.objectives, (0.0, 1.0, 0.0, 0.0))
    assert p.corner().corner() == p.corner()
    # ties split equally: no choices (the uniform preference) stay uniform rather than an arbitrary corner
    assert Preference.from_any([0.25] * 4, "abcd").corner().weights == (0.25,) * 4
    assert Preference.from_any([0.4, 0.4, 0.2], "abc").corner().weights == (0.5, 0.5, 0.0)
