"""RiC's prompt-centred rewards: tags say how a response ranks among the answers to its own prompt, offline
and online, and the bounds the model is asked for come from the centred rewards."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pluralign.errors import ConfigError
from pluralign.methods.ric.centering import centred, prompt_means
from pluralign.methods.ric.config import RiCConfig
from pluralign.methods.ric.trainer import train_ric
from pluralign.objectives import ObjectiveSet


def test_centring_removes_each_prompts_level_and_keeps_the_order_within_it():
    chat = [{"role": "user", "content": "b"}]
    prompts = ["a", "a", "a", chat, chat]
    z = np.array([[3.0, 0.0], [2.0, 1.0], [1.0, 2.0], [-2.0, 5.0], [-3.0, 1.0]])
    means = prompt_means(prompts, z)
    c = centred(prompts, z, means)
    np.testing.assert_allclose(c[:3].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(c[3:].mean(axis=0), 0, atol=1e-12)
    # prompt "a" scored far above prompt b on the first reward; centred, b's better answer ranks with a's best
    assert z[3, 0] < z[2, 0] and c[3, 0] == pytest.approx(c[0, 0] - 0.5)
    assert np.array_equal(np.argsort(c[:3, 0]), np.argsort(z[:3, 0]))
    with pytest.raises(ConfigError, match="center_rewards"):
        centred(["unseen"], z[:1], means)


def _config(world, tmp_path, **overrides) -> RiCConfig:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": s["prompt"], "response": s["response"]}) + "\n" for s in world.train))
    settings = dict(
        output_dir=str(tmp_path / "run"), model_name_or_path=world.base_model, dataset=str(data),
        objective=["sentiment", "conciseness"], response_marker=None, tag_format="<{name}> {value}", tag_levels=5,
        tag_position="response_start", max_steps=1, per_device_train_batch_size=8, max_length=160,
        online_iterations=1, online_prompts=16, online_max_new_tokens=12, online_offline_samples=8,
        online_max_steps=1, report_to="none", disable_tqdm=True, save_steps=100, activation_checkpointing=False,
    )  # fmt: skip
    return RiCConfig(**{**settings, **overrides})


@pytest.mark.slow
def test_prompt_centred_training_tags_offline_and_online_samples_relative_to_their_prompt(tiny_world, tmp_path):
    out = train_ric(_config(tiny_world, tmp_path, center_rewards="prompt"), progress=None)
    objectives = ObjectiveSet.load(out / "objectives.json")  # the scorers and the offline statistics
    prompts = [s["prompt"] for s in tiny_world.train]
    z = objectives.zscores(objectives.score(prompts, [s["response"] for s in tiny_world.train]))
    assert len({json.dumps(p) for p in prompts}) < len(prompts)  # several responses per prompt: centring matters
    means = prompt_means(prompts, z)
    zc = centred(prompts, z, means)
    extra = json.loads((out / "pluralign.json").read_text())["extra"]
    assert extra["center_rewards"] == "prompt"
    # the model is asked for the centred rewards' bounds, not the raw ones
    np.testing.assert_allclose(extra["desired_low"], zc.min(axis=0), atol=1e-6)
    np.testing.assert_allclose(extra["desired_high"], zc.max(axis=0), atol=1e-6)
    assert not np.allclose(zc.min(axis=0), z.min(axis=0))
    # online generations are relabelled with their rewards minus their prompt's offline mean
    accepted = [json.loads(line) for line in (out / "online_1" / "accepted.jsonl").read_text().splitlines()]
    assert accepted
    raw = objectives.zscores(objectives.score([a["prompt"] for a in accepted], [a["response"] for a in accepted]))
    expected = centred([a["prompt"] for a in accepted], raw, means)
    np.testing.assert_allclose([a["z"] for a in accepted], expected, atol=1e-5)


def test_an_unknown_centring_is_a_one_line_error(tiny_world, tmp_path):
    with pytest.raises(ConfigError, match="center_rewards 'mean' is not one of none, prompt"):
        train_ric(_config(tiny_world, tmp_path, center_rewards="mean"), progress=None)
