"""MOSLIM end to end on tiny models: the mapped reward follows the requested intensity, TRL trains, the policy steers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_multihead import trained_rm  # noqa: F401  (module fixture: a tiny trained multi-head RM)

from pluralign.errors import ConfigError
from pluralign.methods.moslim.mapping import RewardMapping
from pluralign.methods.moslim.template import PreferenceTemplate
from pluralign.methods.moslim.trainer import MoslimReward, preference_prompts, sample_targets
from pluralign.objectives.learned.multihead import MultiHeadRewardScorer

PROMPTS = ["Review the lamp.", "Review the desk.", "Review the chair.", "Review the bike."]


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    from pluralign.worlds.reviews.tiny_lm import build_tiny_gpt, train_tokenizer

    out = tmp_path_factory.mktemp("policy")
    texts = [p + " [positivity=4/4 length=any] great lamp ok" for p in PROMPTS] * 20
    tok = train_tokenizer(texts, out, vocab_size=300)
    return build_tiny_gpt(out, tok, n_layer=2, n_embd=32, n_positions=96)


def reward_fn(rm_dir, stats: str = "head") -> MoslimReward:
    scorer = MultiHeadRewardScorer(rm_dir)
    template = PreferenceTemplate(scorer.objectives, scorer.spec.num_classes)
    return MoslimReward(
        scorer, template, RewardMapping(scorer.objectives, scorer.spec.num_classes, stats, scorer.spec.class_stats)
    )


@pytest.mark.parametrize("stats", ["head", "batch", "none"])
def test_reward_follows_the_intensity_the_prompt_asks_for(trained_rm, stats):  # noqa: F811
    reward = reward_fn(trained_rm, stats)
    template = reward.template
    wants_positive = template.apply("Review the lamp.", [4, None])
    wants_negative = template.apply("Review the lamp.", [0, None])
    gushing, plain = "great great great great", "lamp lamp lamp"
    r = reward([wants_positive, wants_negative, wants_positive, wants_negative], [gushing, gushing, plain, plain])
    assert r[0] > r[1] and r[3] > r[2], r
    # an unspecified objective does not contribute: only 'length' asked for, positivity changes nothing
    only_length = template.apply("Review the lamp.", [None, 0])
    a, b = reward([only_length, only_length], ["great great", "lamp lamp"])
    if stats != "batch":  # running statistics move between calls
        assert a == pytest.approx(b, abs=0.35)


def test_sampled_training_prompts_carry_targets_and_masks():
    import random

    template = PreferenceTemplate(["a", "b"], [5, 3])
    rows = preference_prompts(["x", "y"], template, per_prompt=50, unspecified_probability=0.3, seed=1)
    assert len(rows) == 100
    parsed = [template.parse(r) for r in rows]
    assert {p for p, _ in parsed} == {"x", "y"}
    targets = [t for _, t in parsed]
    assert all(any(v is not None for v in t) for t in targets)  # never everything masked
    assert {t[0] for t in targets} == {None, 0, 1, 2, 3, 4} and {t[1] for t in targets} == {None, 0, 1, 2}
    masked = np.mean([t[0] is None for t in targets])
    assert 0.1 < masked < 0.5
    assert sample_targets(random.Random(0), [5, 5], 0.0).count(None) == 0


def test_preference_sampling_gives_the_levels_inference_asks_for():
    import random

    from pluralign.methods.moslim.mapping import preference_to_levels

    rng = random.Random(0)
    drawn = [sample_targets(rng, [5, 5], 0.0, sampling="preference") for _ in range(300)]
    assert all(a + b in (3, 4, 5) for a, b in drawn)  # linear map of w and 1 - w: levels add up to about 4
    assert {a for a, _ in drawn} == {0, 1, 2, 3, 4}
    grid_levels = {tuple(preference_to_levels([w / 10, 1 - w / 10], [5, 5])) for w in range(11)}
    assert grid_levels <= {tuple(t) for t in drawn}
    with pytest.raises(ConfigError, match="target_sampling"):
        sample_targets(rng, [5, 5], 0.0, sampling="zipf")


def test_template_must_match_reward_model_heads(trained_rm):  # noqa: F811
    scorer = MultiHeadRewardScorer(trained_rm)
    with pytest.raises(ConfigError, match="differ from the template"):
        MoslimReward(scorer, PreferenceTemplate(["length", "positivity"], [3, 5]), RewardMapping(["a"], [2], "none"))


@pytest.mark.parametrize("algorithm", ["grpo", "rloo", "online_dpo"])
def test_moslim_trains_with_trl_and_steers_by_preference(tmp_path, trained_rm, tiny_policy, algorithm):  # noqa: F811
    from pluralign import load_policy
    from pluralign.methods.moslim.config import config_class
    from pluralign.methods.moslim.trainer import train_moslim

    length = {"max_new_tokens": 8} if algorithm == "online_dpo" else {"max_completion_length": 8, "num_generations": 4}
    config = config_class(algorithm)(
        output_dir=str(tmp_path / "moslim"),
        model_name_or_path=tiny_policy,
        reward_model=str(trained_rm),
        preferences_per_prompt=2,
        max_steps=2,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        use_cpu=True,
        disable_tqdm=True,
        **length,
    )
    out = train_moslim(config, prompts=PROMPTS, progress=lambda _m: None)
    run = json.loads((out / "moslim_run.json").read_text())
    assert run["steps"] == 2 and run["algorithm"] == algorithm and run["first_reward"] is not None
    manifest = json.loads((out / "pluralign.json").read_text())
    assert manifest["method"] == "moslim" and manifest["objectives"] == ["positivity", "length"]

    policy = load_policy(out)
    assert policy.objectives == ["positivity", "length"]
    assert policy.steered_prompt("Review it.", {"positivity": 1.0, "length": 0.0}) == (
        "Review it. [positivity=4/4 length=any]"  # w = 0: unspecified (zero_weight, docs/moslim.md)
    )
    assert manifest["extra"]["zero_weight"] == "unspecified"
    assert policy.steered_prompt("Review it.", [0.5, 0.5]) == "Review it. [positivity=2/4 length=1/2]"
    assert policy.steered_prompt("Review it.", None) == "Review it. [positivity=any length=any]"
    texts = policy.generate(PROMPTS[:2], preference={"positivity": 0.8, "length": 0.2}, max_new_tokens=5)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_unknown_algorithm_is_a_config_error():
    from pluralign.methods.moslim.config import config_class

    with pytest.raises(ConfigError, match="algorithm 'ppo'"):
        config_class("ppo")
