"""MOSLIM's preference-in-prompt template: rendering, reading back, and clear errors."""

from __future__ import annotations

import pytest

from pluralign.errors import ConfigError
from pluralign.methods.moslim.template import PreferenceTemplate

NAMES = ["sentiment", "conciseness"]


def test_default_template_renders_levels_and_unspecified():
    t = PreferenceTemplate(NAMES, [5, 3])
    assert t.render([3, None]) == " [sentiment=3/4 conciseness=any]"
    assert t.apply("Review the lamp.", [0, 2]) == "Review the lamp. [sentiment=0/4 conciseness=2/2]"


def test_block_goes_before_the_response_marker_and_parses_back():
    t = PreferenceTemplate(NAMES, [5, 5])
    prompt = "Human: review the lamp.\n\nAssistant:"
    steered = t.apply(prompt, [4, None])
    assert steered == "Human: review the lamp. [sentiment=4/4 conciseness=any]\n\nAssistant:"
    assert t.parse(steered) == (prompt, [4, None])


def test_custom_template_round_trip_and_last_block_wins():
    t = PreferenceTemplate(
        NAMES,
        [5, 5],
        template="\nPreferences: conciseness={conciseness}; sentiment={sentiment}",
        level_format="level {level} of {max}",
        unspecified="unspecified",
    )
    steered = t.apply("Say [sentiment=1/4] something.", [2, 1])
    assert steered.endswith("\nPreferences: conciseness=level 1 of 4; sentiment=level 2 of 4")
    assert t.parse(steered) == ("Say [sentiment=1/4] something.", [2, 1])
    assert t.parse(t.apply("x", [None, 0])) == ("x", [None, 0])
    assert t.parse("no block here") == ("no block here", [None, None])


def test_conversational_prompt_gets_block_in_last_user_message():
    t = PreferenceTemplate(NAMES, [5, 5])
    msgs = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "Review it."}]
    steered = t.apply(msgs, [1, 2])
    assert steered[-1]["content"] == "Review it. [sentiment=1/4 conciseness=2/4]"
    assert msgs[-1]["content"] == "Review it."  # not mutated
    assert t.parse(steered) == (msgs, [1, 2])


def test_template_missing_an_objective_slot_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"no slot for objective 'conciseness'; add \{conciseness\}"):
        PreferenceTemplate(NAMES, [5, 5], template=" [sentiment={sentiment}]")


def test_template_errors_name_the_problem():
    with pytest.raises(ConfigError, match=r"slot \{tone\} is not an objective"):
        PreferenceTemplate(NAMES, [5, 5], template="{sentiment} {conciseness} {tone}")
    with pytest.raises(ConfigError, match="twice"):
        PreferenceTemplate(NAMES, [5, 5], template="{sentiment} {conciseness} {sentiment}")
    with pytest.raises(ConfigError, match="level_format"):
        PreferenceTemplate(NAMES, [5, 5], level_format="{max}")
    with pytest.raises(ConfigError, match="outside 0..4"):
        PreferenceTemplate(NAMES, [5, 5]).render([5, 0])


def test_level_names_render_words_and_parse_back():
    names = {"sentiment": ["awful", "fine", "great"], "conciseness": ["long", "medium", "short"]}
    t = PreferenceTemplate(NAMES, [3, 3], level_names=names)
    steered = t.apply("Review the lamp.", [2, 0])
    assert steered == "Review the lamp. [sentiment=great conciseness=long]"
    assert t.parse(steered) == ("Review the lamp.", [2, 0])
    assert t.parse(t.apply("x", [None, 2])) == ("x", [None, 2])
    assert PreferenceTemplate.from_dict(t.to_dict()).render([0, 1]) == " [sentiment=awful conciseness=medium]"
    with pytest.raises(ConfigError, match=r"level_names\['sentiment'\] must hold 3 distinct"):
        PreferenceTemplate(NAMES, [3, 3], level_names={"sentiment": ["bad", "good"]})
    with pytest.raises(ConfigError, match="not an objective"):
        PreferenceTemplate(NAMES, [3, 3], level_names={"tone": ["a", "b", "c"]})
