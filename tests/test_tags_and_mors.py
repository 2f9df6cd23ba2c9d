import numpy as np
import pytest

from pluralign.errors import ConfigError
from pluralign.methods.ric.mors import mors_accept, mors_thresholds, sample_desired_rewards
from pluralign.preferences.tags import TagTemplate


def test_tags_go_before_the_assistant_marker():
    t = TagTemplate()
    out = t.apply("\n\nHuman: hi\n\nAssistant:", ["helpful", "harmless"], [0.54, -1.25])
    assert out == "\n\nHuman: hi <helpful> 0.5 <harmless> -1.2\n\nAssistant:"
    assert t.apply("Tell me.", ["a"], [-0.04]) == "Tell me. <a> 0.0"
    assert t.apply("x", ["a"], None) == "x"


def test_conversational_tags_on_the_last_user_turn():
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]
    out = TagTemplate().apply(msgs, ["a", "b"], [1.0, 2.0])
    assert out[1]["content"] == "hi <a> 1.0 <b> 2.0" and msgs[1]["content"] == "hi"


def test_custom_and_invalid_templates():
    assert (
        TagTemplate(tag_format="[{name}={value:+.1f}]", separator="").render(["a", "b"], [1, -2]) == "[a=+1.0][b=-2.0]"
    )
    with pytest.raises(ConfigError, match="value"):
        TagTemplate(tag_format="<{name}>")


def test_desired_rewards_keep_one_coordinate_and_max_the_rest():
    rng = np.random.default_rng(0)
    lo, hi = np.array([-2.0, -3.0, -1.0]), np.array([2.0, 1.0, 4.0])
    d = sample_desired_rewards(500, lo, hi, rng)
    at_max = np.isclose(d, hi[None, :])
    assert (at_max.sum(axis=1) == 2).all()
    assert ((d >= lo) & (d <= hi)).all()
    # each objective is the free one about a third of the time
    free = (~at_max).argmax(axis=1)
    assert all(100 < (free == k).sum() < 240 for k in range(3))


def test_mors_rejects_only_samples_below_threshold_on_every_objective():
    z = np.array([[0.0, 0.0], [1.0, -5.0], [-5.0, 1.0], [0.5, 0.5], [-1.0, -1.0]])
    thr = mors_thresholds(z, 0.7)
    np.testing.assert_allclose(thr, np.quantile(z, 0.7, axis=0))
    keep = mors_accept(z, thr)
    assert keep.tolist() == [False, True, True, True, False]


def test_a_value_shown_as_zero_is_one_tag_without_a_sign():
    from pluralign.preferences.tags import TagTemplate

    integers = TagTemplate(tag_format="<{name}> {value:.0f}")
    assert integers.render(["a", "b", "c"], [-0.3, 0.4, -1.6]) == "<a> 0 <b> 0 <c> -2"
    assert TagTemplate().render(["a", "b"], [-0.3, -0.04]) == "<a> -0.3 <b> 0.0"


def test_quantile_level_tags_follow_the_rewards_order_with_equal_shares():
    from pluralign.preferences.tags import level, quantile_edges

    z = np.random.default_rng(0).normal(size=1000)
    edges = quantile_edges(z, 5)
    levels = np.array([level(edges, v) for v in z])
    assert levels.min() == 0 and levels.max() == 4
    assert np.all(np.diff(levels[np.argsort(z)]) >= 0)  # monotone in the reward
    assert np.allclose(np.bincount(levels) / len(z), 0.2, atol=0.01)  # every level equally common
    t = TagTemplate(tag_format="<{name}> {value}", level_edges={"a": edges, "b": edges})
    assert t.render(["a", "b"], [z.max(), z.min()]) == "<a> 4 <b> 0"
    assert "-" not in t.render(["a", "b"], [-3.0, -0.1])
    with pytest.raises(ConfigError, match="objective"):
        t.render(["a", "c"], [0.0, 0.0])
    with pytest.raises(ConfigError, match="tag_levels"):
        quantile_edges(z, 1)


def test_tags_at_the_response_start_follow_the_marker_on_their_own_line():
    marker = "<|im_end|>\n<|im_start|>assistant\n"
    t = TagTemplate(tag_format="<{name}> {value:.0f}", response_marker=marker, position="response_start")
    prompt = "<|im_start|>user\nHi" + marker
    assert t.apply(prompt, ["a", "b"], [1.0, -2.0]) == prompt + "<a> 1 <b> -2\n"
    assert t.apply(prompt, ["a"], None) == prompt
    with pytest.raises(ConfigError, match="tag_position response_start needs text prompts"):
        t.apply([{"role": "user", "content": "Hi"}], ["a"], [1.0])
    with pytest.raises(ConfigError, match="tag_position 'middle'"):
        TagTemplate(position="middle")
