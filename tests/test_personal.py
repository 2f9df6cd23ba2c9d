"""Simulated users with real tastes (METHODS.md §8): their choices follow their weights over real scorers,
``infer_preference`` recovers a user's dominant objective from 10 choices, the steering share is the share
of the true weights' gain, and the personal benchmark's stages run end to end (tiny Llama) and are cached."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from pluralign.errors import ConfigError, DataError, PreferenceError
from pluralign.evaluation.personalisation import (
    inference_by_context_size,
    mismatched_rewards,
    oracle_accuracy,
    signed_differences,
    steering_summary,
)
from pluralign.objectives.builtin import BuiltinObjective
from pluralign.objectives.set import ObjectiveSet
from pluralign.preferences.inference import infer_preference
from pluralign.preferences.simulated_users import SimulatedUsers, pairs_within_groups

PROMPTS = ["How do I fix a flat bike tyre?", "What should I cook tonight?", "Can you help me plan a trip?",
           "Why is my plant dying?"]  # fmt: skip
TONES = {
    "warm": "Great question, I am happy to help and I love this!",
    "cold": "Sadly this is awful, a terrible and hopeless mess.",
    "flat": "Here is the answer.",
}
BODIES = {
    "short": "Check it first.",
    "long": "First look at every part carefully, then write down what you see, then compare it with the manual, "
    "and only then change the part that is worn out or broken.",
}
WORDY = {
    "plain": "",
    "wordy": " Notwithstanding considerable uncertainty, comprehensive documentation remains indispensable.",
}


def _pool() -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Responses (every tone x body x wording) to a few prompts, scored by three real scorers (VADER
    sentiment, conciseness, Flesch readability) and z-scored on the pool; (prompts, responses, z, prompt ids)."""
    prompts, responses, ids = [], [], []
    for j, p in enumerate(PROMPTS):
        for tone, body, wordy in itertools.product(TONES.values(), BODIES.values(), WORDY.values()):
            prompts.append(p)
            responses.append(f"{tone} {body}{wordy}")
            ids.append(j)
    objectives = ObjectiveSet([BuiltinObjective(n, n) for n in ("sentiment", "conciseness", "readability")])
    scores = objectives.score(prompts, responses)
    objectives.fit_stats(scores)
    return prompts, responses, objectives.zscores(scores), np.asarray(ids)


def test_a_simulated_users_choices_follow_their_weights():
    prompts, responses, z, ids = _pool()
    pairs = pairs_within_groups(ids)
    assert len(pairs) == len(PROMPTS) * 12 * 11 // 2 and (ids[pairs[:, 0]] == ids[pairs[:, 1]]).all()
    names = ("sentiment", "conciseness", "readability")
    weights = np.array([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05]])
    za, zb = z[pairs[:, 0]], z[pairs[:, 1]]
    # deterministic users pick the higher mixture reward: the sentimental one the warmer answer, the other the shorter
    sure = SimulatedUsers(weights, names, tau=0.0)
    picks = sure.choose(za, zb)
    assert (picks == sure.oracle(za, zb)).all()
    warmer = za[:, 0] > zb[:, 0] + 1.0
    colder = za[:, 0] < zb[:, 0] - 1.0
    assert picks[0, warmer].mean() > 0.95 and picks[0, colder].mean() < 0.05
    shorter = za[:, 1] > zb[:, 1] + 1.0
    assert picks[1, shorter].mean() > 0.95
    # noisy users: the share of a-choices over many draws is sigmoid(margin / tau), pair by pair
    noisy = SimulatedUsers(weights, names, tau=0.5)
    rate = np.mean([noisy.choose(za, zb, seed=s) for s in range(400)], axis=0)
    expected = 1 / (1 + np.exp(-noisy.margins(za, zb) / 0.5))
    assert np.abs(rate - expected).max() < 0.1 and np.abs(rate - expected).mean() < 0.025
    # and an oracle that knows the weights predicts the noisy choices better than one that has them swapped
    choices = noisy.choose(za, zb, seed=1)
    swapped = SimulatedUsers(weights[::-1], names).margins(za, zb)
    assert oracle_accuracy(noisy.margins(za, zb), choices) > oracle_accuracy(swapped, choices) + 20


def test_users_are_dirichlet_mixtures_and_bad_settings_are_one_line_errors():
    users = SimulatedUsers.draw(2000, ["a", "b", "c"], alpha=0.3, seed=0)
    assert users.weights.shape == (2000, 3) and np.allclose(users.weights.sum(1), 1)
    spread = SimulatedUsers.draw(2000, ["a", "b", "c"], alpha=5.0, seed=0)
    # alpha < 1: most users follow one objective; a large alpha: near-equal mixtures
    assert (users.weights.max(1) > 0.8).mean() > 0.4 > (spread.weights.max(1) > 0.8).mean()
    assert SimulatedUsers.from_dict(json.loads(json.dumps(users.to_dict()))).weights == pytest.approx(users.weights)
    for bad in (
        lambda: SimulatedUsers.draw(0, ["a", "b"]),
        lambda: SimulatedUsers.draw(3, ["a", "b"], alpha=0),
        lambda: SimulatedUsers(np.array([[0.5, 0.6]]), ("a", "b")),
        lambda: SimulatedUsers.draw(3, ["a"]),
    ):
        with pytest.raises(PreferenceError) as err:
            bad()
        assert "\n" not in str(err.value)


def test_inference_recovers_a_users_dominant_objective_from_ten_choices():
    prompts, responses, z, ids = _pool()
    pairs = pairs_within_groups(ids)
    names = ["sentiment", "conciseness", "readability"]
    users = SimulatedUsers.draw(300, names, alpha=0.3, tau=0.25, seed=3)
    dominant = np.flatnonzero(users.weights.max(1) > 0.7)[:24]  # users who mostly follow one objective
    assert len(dominant) == 24 and len(set(users.weights[dominant].argmax(1))) == 3  # every objective leads some
    choices = users.choose(z[pairs[:, 0]], z[pairs[:, 1]], seed=4)
    rng = np.random.default_rng(5)
    hits = []
    for u in dominant:
        idx = rng.permutation(len(pairs))[:10]  # ten of the user's choices, as (prompt, chosen, rejected) texts
        context = [
            (prompts[a], responses[a], responses[b]) if c else (prompts[a], responses[b], responses[a])
            for (a, b), c in zip(pairs[idx], choices[u, idx])
        ]
        objectives = ObjectiveSet([BuiltinObjective(n, n) for n in names])
        objectives.fit_stats(objectives.score([prompts[i] for i in range(len(z))], responses))
        inferred = infer_preference(context, objectives)  # scores the texts with the real scorers itself
        hits.append(int(np.argmax(inferred.weights)) == int(users.weights[u].argmax()))
    assert np.mean(hits) >= 0.8
    # by context size: the cosine with the true weights grows with k, from the uniform guess at k = 0
    diffs = [signed_differences(z, pairs, choices[u]) for u in dominant]
    by_k = inference_by_context_size(diffs, users.weights[dominant], names, [0, 1, 10], repeats=5, seed=0)
    uniform = np.mean([np.ones(3) @ w / np.sqrt(3) / np.linalg.norm(w) for w in users.weights[dominant]])
    assert by_k["cosine"][0] == pytest.approx(uniform, abs=1e-6)
    assert by_k["cosine"][2] > by_k["cosine"][1] > by_k["cosine"][0]
    assert by_k["cosine"][2] > by_k["cosine"][0] + 0.1
    assert by_k["accuracy"][2] > by_k["accuracy"][0]


def test_steer_share_is_the_share_of_the_personalisation_gain_over_other_users_weights():
    other, equal, base = np.array([0.0, 0.5, -1.0]), np.array([0.5, 0.5, 0.0]), np.array([0.2, 0.1, 0.0])
    true = np.array([1.0, 1.5, 2.0])
    rewards = {"inferred": other + 0.5 * (true - other), "true": true, "other": other, "equal": equal, "base": base}
    half = steering_summary(rewards)
    assert half["steer_share"] == pytest.approx(0.5)
    assert half["steer_share_interval90"] == pytest.approx([0.5, 0.5]) and half["bootstrap_without_gain"] == 0
    assert half["gain_true_over_other"] == pytest.approx(np.mean(true - other))
    assert half["steer_share_over_equal"] == pytest.approx(np.mean(rewards["inferred"] - equal) / np.mean(true - equal))
    assert half["steer_share_over_base"] == pytest.approx(np.mean(rewards["inferred"] - base) / np.mean(true - base))
    # shifting every reward by a constant (where zero falls) does not change the shares
    shifted = steering_summary({c: v + 3 for c, v in rewards.items()})
    assert shifted["steer_share"] == pytest.approx(0.5)
    assert shifted["steer_share_over_base"] == pytest.approx(half["steer_share_over_base"])
    # a policy that serves a user no better with their own weights than with others' has no share to take
    flat = steering_summary({"inferred": other, "true": other, "other": other, "equal": equal, "base": base})
    assert flat["steer_share"] is None and flat["steer_share_interval90"] is None
    with pytest.raises(DataError, match="other"):
        steering_summary({"inferred": base, "true": base, "equal": base, "base": base})


def test_the_mismatched_baseline_scores_each_user_on_the_answers_given_for_the_others():
    # two users, one prompt, two objectives: user 0 wants objective 0, user 1 objective 1; the answer
    # driven by a user's weights is good on that user's objective only
    weights = np.array([[1.0, 0.0], [0.0, 1.0]])
    z_true = np.array([[[2.0, -1.0]], [[-1.0, 3.0]]])  # (users whose weights drove it, prompts, objectives)
    np.testing.assert_allclose(mismatched_rewards(z_true, weights), [-1.0, -1.0])
    three = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    z3 = np.concatenate([z_true, [[[0.0, 0.0]]]])
    np.testing.assert_allclose(mismatched_rewards(z3, three), [(-1.0 + 0.0) / 2, (-1.0 + 0.0) / 2, (0.5 + 1.0) / 2])


# ---------------------------------------------------------------------------------------------------
# the benchmark's stages end to end, with a tiny random Llama as the policy's base model

REQUESTS = [f"How do I keep the plants on balcony number {k} alive?" for k in range(60)]


@pytest.fixture(scope="module")
def personal_run(tmp_path_factory):
    import torch
    from tiny_models import tiny_causal_lm

    from pluralign.worlds.chat.personal import PERSONAL
    from pluralign.worlds.chat.personal_benchmark import PersonalSettings, run_personal

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("personal")
    base = tiny_causal_lm(root / "base", "llama")
    pairs = root / "pairs.jsonl"
    pairs.write_text("".join(
        json.dumps({"prompt": f"\n\nHuman: {q}\n\nAssistant:", "chosen": f" Water them gently ({k}).",
                    "rejected": f" Burn them all, number {k}."}) + "\n" for k, q in enumerate(REQUESTS)
    ))  # fmt: skip
    world = PERSONAL.settings(base_model=str(base), pairs=str(pairs), n_prompts=8, n_eval_prompts=6,
                              held_out_fraction=0.4, max_new_tokens=8, offline_max_steps=2, batch_size=4,
                              rl_steps=1, rl_batch_size=4, rl_generations=2)  # fmt: skip
    users = PersonalSettings(policy="ric", n_users=8, unseen_users=3, ks=(0, 1, 3), eval_repeats=10, num_targets=5,
                             infer_repeats=3, npbtl_max_steps=20, steer_prompts=2, steer_context=3, driver="mean")  # fmt: skip
    result = run_personal(root / "run", users, world, progress=None)
    yield result, root / "run", users, world
    torch.set_num_threads(threads)


def test_the_benchmark_reports_every_measure_by_k_and_trains_ric_on_training_prompts_only(personal_run):
    from pluralign.worlds.chat.personal_benchmark import format_table

    result, out, users, world = personal_run
    assert result["k"] == [0, 1, 3]
    for key in ("npbtl", "btl", "npbtl_scores", "btl_scores", "oracle", "inferred", "cosine",
                "inferred_uniform_prior", "cosine_uniform_prior"):  # fmt: skip
        assert len(result[key]) == 3, key
    # the population prior is fitted on the training users' choices and used at k > 0 only
    assert result["population_prior"]["alpha"] > 0 and result["population_prior"]["scale"] > 0
    assert result["cosine"][0] == result["cosine_uniform_prior"][0]
    assert result["objectives"] == ["harmless", "relevance", "sentiment", "conciseness"]
    # the oracle is the exact share of the unseen users' test choices its weights predict
    saved = SimulatedUsers.from_dict(json.loads((out / "users.json").read_text()))
    assert saved.weights.shape == (8, 4) and saved.tau == users.tau
    assert result["oracle"][0] == result["oracle"][2] and result["oracle"][0] > 50
    # RiC's offline data holds the training prompts' responses only; the steering prompts are test prompts
    world_data = json.loads((out / "world" / "world.json").read_text())
    test_prompts = {json.dumps(r["prompt"]) for r in world_data["train"] if r["split"] == "test"}
    ric_rows = [json.loads(line) for line in (out / "ric" / "train.jsonl").read_text().splitlines()]
    assert ric_rows and not {json.dumps(r["prompt"]) for r in ric_rows} & test_prompts
    assert len(ric_rows) == sum(r["split"] == "train" for r in world_data["train"])
    steer = result["steering"]
    assert (
        steer["users"] == 3
        and steer["prompts"] == 2
        and set(steer["per_user"]) == {"inferred", "true", "other", "equal", "base"}
    )
    assert result["steer_share"] == steer["steer_share"]
    table = format_table(result)
    assert "steer_share" in table and "population's prior" in table and len(table.splitlines()) == 2 + 3 + 1 + 2


def test_a_rerun_reuses_every_stage(personal_run, monkeypatch):
    from pluralign.generation import batched
    from pluralign.methods.ric import policy
    from pluralign.worlds.chat import personal_benchmark
    from pluralign.worlds.chat.personal_benchmark import run_personal

    result, out, users, world = personal_run

    def fail(*args, **kwargs):
        pytest.fail("a cached stage ran again")

    monkeypatch.setattr(batched, "generate_batched", fail)  # no sampling of the pool
    monkeypatch.setattr(policy, "generate_batched", fail)  # no steering generation
    monkeypatch.setattr(personal_benchmark, "reward_model_accuracy", fail)
    again = run_personal(out, users, world, progress=None)
    for key in ("npbtl", "btl", "npbtl_scores", "oracle", "inferred", "cosine", "steer_share"):
        assert again[key] == result[key], key
    assert "reward_models (cached)" in again["stage_seconds"]


def test_soups_can_be_the_steered_policy_and_reuses_every_earlier_stage(personal_run, monkeypatch):
    """``policy="soups"``: one RLOO run per objective on the training prompts, driven per user by weights; the
    world and reward-model stages of the same folder are reused, and each preference is its own request."""
    import dataclasses

    from pluralign.worlds.chat import personal_benchmark
    from pluralign.worlds.chat.personal_benchmark import run_personal

    result, out, users, world = personal_run

    def fail(*args, **kwargs):
        pytest.fail("a cached stage ran again")

    monkeypatch.setattr(personal_benchmark, "reward_model_accuracy", fail)
    soups_users = dataclasses.replace(users, policy="soups")
    got = run_personal(out, soups_users, world, progress=None)
    assert got["policy"] == "soups" and got["steering"]["policy"] == "soups"
    assert got["npbtl"] == result["npbtl"] and got["cosine"] == result["cosine"]
    manifest = json.loads((out / "soups" / "pluralign.json").read_text())
    assert manifest["method"] == "soups" and set(manifest["extra"]["runs"]) == set(result["objectives"])
    # Soups's prompt carries no tag: requests differ by their weights (3 users x 3 conditions, equal shared)
    assert got["steering"]["distinct_tagged_prompts"] > got["steering"]["prompts"]
    with pytest.raises(ConfigError, match="rl_steps"):  # refused before any stage runs
        run_personal(out, soups_users, dataclasses.replace(world, rl_steps=2), progress=None)


def test_ric_can_answer_with_tag_guidance_and_its_answers_are_cached_apart(personal_run, monkeypatch):
    """``guidance_scale`` > 1: the same RiC model answers with guidance on its tags; every earlier stage is
    reused, but the plain answers' cache is not (their tagged prompts are the same, their decoding is not)."""
    import dataclasses

    from pluralign.methods.ric import policy as ric_policy
    from pluralign.worlds.chat import demo as chat_demo, personal_benchmark
    from pluralign.worlds.chat.personal_benchmark import PersonalSettings, run_personal

    result, out, users, world = personal_run

    def fail(*args, **kwargs):
        pytest.fail("a cached stage ran again")

    monkeypatch.setattr(personal_benchmark, "reward_model_accuracy", fail)
    monkeypatch.setattr(chat_demo, "train_ric_chat", fail)  # imported from there when the stage runs
    guided_calls = []
    real = ric_policy.generate_batched

    def spy(*args, **kwargs):
        guided_calls.append(kwargs.get("guidance_scale"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ric_policy, "generate_batched", spy)
    got = run_personal(out, dataclasses.replace(users, guidance_scale=3.0), world, progress=None)
    assert guided_calls and set(guided_calls) == {3.0}  # regenerated, with guidance
    assert got["steering"]["guidance_scale"] == 3.0 and result["steering"]["guidance_scale"] == 1.0
    assert got["npbtl"] == result["npbtl"] and got["cosine"] == result["cosine"]
    with pytest.raises(ConfigError, match="only the ric policy takes one above 1"):
        PersonalSettings(policy="soups", guidance_scale=2.0)


def test_the_corner_driver_steers_by_the_largest_inferred_weight_beside_the_posterior_mean(personal_run, monkeypatch):
    """``driver="corner"``: the policy is driven by the corner of each user's inferred weights; the posterior
    mean itself is driven beside it (``steer_share_posterior_mean``); no earlier stage runs again."""
    import dataclasses

    from pluralign.worlds.chat import personal_benchmark
    from pluralign.worlds.chat.personal_benchmark import PersonalSettings, run_personal

    result, out, users, world = personal_run  # the fixture drives by the posterior mean (driver="mean")
    assert result["steering"]["driver"] == "mean" and "posterior_mean" not in result["steering"]["per_user"]

    def fail(*args, **kwargs):
        pytest.fail("a cached stage ran again")

    monkeypatch.setattr(personal_benchmark, "reward_model_accuracy", fail)
    got = run_personal(out, dataclasses.replace(users, driver="corner"), world, progress=None)
    mean, corner = np.array(result["steering"]["inferred_weights"]), np.array(got["steering"]["inferred_weights"])
    assert (corner.max(axis=1) == 1).all() and (corner.argmax(axis=1) == mean.argmax(axis=1)).all()
    steer = got["steering"]
    assert steer["driver"] == "corner" and set(steer["per_user"]) >= {"inferred", "posterior_mean", "true"}
    assert steer["per_user"]["posterior_mean"] == result["steering"]["per_user"]["inferred"]  # the same answers
    assert steer["steer_share_posterior_mean"] == result["steer_share"]
    assert steer["inferred_cosine"] == result["steering"]["inferred_cosine"]  # the cosine is the posterior mean's
    with pytest.raises(ConfigError, match="driver 'mode' is not one of corner, mean"):
        PersonalSettings(driver="mode")


def test_a_ric_folder_is_reused_only_with_the_tags_it_was_trained_with(tmp_path):
    """A folder saved before ``center_rewards`` existed was trained with raw tags: reusing it for centred
    tags is a one-line error, not a silent reuse."""
    import dataclasses
    import json

    from pluralign.errors import ConfigError
    from pluralign.worlds.chat.personal_benchmark import PERSONAL, RIC_FIELDS, _check_policy_settings

    settings = PERSONAL.settings(seed=0)
    old = {f: getattr(settings, f) for f in RIC_FIELDS if f != "center_rewards"}
    (tmp_path / "personal_ric_settings.json").write_text(json.dumps(old))
    _check_policy_settings(tmp_path, dataclasses.replace(settings, center_rewards="none"))
    with pytest.raises(ConfigError, match="center_rewards='none', not 'prompt'"):
        _check_policy_settings(tmp_path, dataclasses.replace(settings, center_rewards="prompt"))
