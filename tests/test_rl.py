"""The shared RL-on-objectives glue: the scalarised reward and one RLOO run (pluralign.training.rl)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pluralign.errors import DataError, PreferenceError
from pluralign.objectives import ObjectiveSet
from pluralign.objectives.set import ObjectiveStats
from pluralign.training.rl import (
    DEMO_RL_SETTINGS,
    ObjectiveRLConfig,
    ScalarisedReward,
    run_is_done,
    train_weighted_policy,
)
from pluralign.worlds.reviews.corpus import generate_corpus
from pluralign.worlds.reviews.tiny_lm import build_tiny_gpt, tokenizer_texts, train_tokenizer


def fitted_objectives() -> ObjectiveSet:
    objectives = ObjectiveSet.from_specs(["sentiment", "conciseness"])
    objectives.stats = {
        "sentiment": ObjectiveStats(mean=0.2, std=0.5, min=-1.0, max=1.0, count=10),
        "conciseness": ObjectiveStats(mean=-12.0, std=4.0, min=-30.0, max=-1.0, count=10),
    }
    return objectives


def test_scalarised_reward_is_weighted_sum_of_zscores():
    reward = ScalarisedReward(fitted_objectives(), [0.3, 0.7])
    prompts = ["Review the lamp.", "Review the lamp.", "How was the tent?"]
    completions = [" It is great and lovely.", " Awful.", " The tent is fine. The price is poor. Overall bad."]
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()
    words = [5, 1, 10]
    expected = [
        0.3 * (vader.polarity_scores(c)["compound"] - 0.2) / 0.5 + 0.7 * (-n - (-12.0)) / 4.0
        for c, n in zip(completions, words)
    ]
    got = reward(prompts=prompts, completions=completions, completion_ids=None, trainer_state=None)
    assert got == pytest.approx(expected, abs=1e-9)
    # conversational completions are scored on their assistant text
    chat = [[{"role": "assistant", "content": c}] for c in completions]
    assert reward(prompts=prompts, completions=chat) == pytest.approx(expected, abs=1e-9)


def test_scalarised_reward_refuses_bad_weights_and_missing_stats():
    with pytest.raises(PreferenceError):
        ScalarisedReward(fitted_objectives(), [0.5, 0.3, 0.2])
    with pytest.raises(PreferenceError):
        ScalarisedReward(fitted_objectives(), [1.5, -0.5])
    with pytest.raises(DataError, match="statistics"):
        ScalarisedReward(ObjectiveSet.from_specs(["sentiment"]), [1.0])


@pytest.fixture(scope="module")
def tiny_start(tmp_path_factory):
    """A tiny random GPT-2 with a BPE tokenizer trained on the demo corpus, plus prompts and fitted objectives."""
    corpus = generate_corpus(40, 2, seed=3)
    folder = tmp_path_factory.mktemp("tiny_start")
    tok = train_tokenizer(tokenizer_texts(corpus), folder, vocab_size=300)
    build_tiny_gpt(folder, tok, n_layer=1, n_embd=32, n_positions=96)
    objectives = ObjectiveSet.from_specs(["sentiment", "conciseness"])
    objectives.fit_stats(objectives.score([s["prompt"] for s in corpus], [s["response"] for s in corpus]))
    prompts = sorted({s["prompt"] for s in corpus})
    return str(folder), objectives, prompts


def rl_config(start: str, out, **overrides) -> ObjectiveRLConfig:
    settings = {**DEMO_RL_SETTINGS, "max_steps": 2, "per_device_train_batch_size": 8, "max_completion_length": 12}
    return ObjectiveRLConfig(output_dir=str(out), model_name_or_path=start, **{**settings, **overrides})


def test_conciseness_run_learns_to_stop_early(tiny_start, tmp_path):
    """RLOO on the conciseness z-score alone makes the (random) policy's completions shorter."""
    import torch

    from pluralign.generation.batched import generate_batched
    from pluralign.models.loading import load_causal_lm, load_tokenizer

    start, objectives, prompts = tiny_start
    config = rl_config(start, tmp_path, max_steps=25, learning_rate=3e-3, beta=0.0, max_completion_length=16)
    run = train_weighted_policy(config, objectives, [0.0, 1.0], prompts, tmp_path / "run")
    assert run_is_done(run)
    record = json.loads((run / "pluralign_run.json").read_text())
    assert record["weights"] == [0.0, 1.0] and record["steps"] == 25
    tok = load_tokenizer(start)

    def mean_words(model_dir: str) -> float:
        torch.manual_seed(0)
        texts = generate_batched(
            load_causal_lm(model_dir, device="cpu"), tok, prompts, max_new_tokens=16, do_sample=True
        )
        return float(np.mean([-s for s in objectives["conciseness"].score(prompts, texts)]))

    after, before = mean_words(str(run)), mean_words(start)
    assert after < 0.6 * before


def test_prompt_only_dataset_needs_an_objectives_file(tmp_path):
    from pluralign.errors import ConfigError
    from pluralign.training.rl import prepare_objectives_and_prompts

    data = tmp_path / "prompts.jsonl"
    data.write_text(
        "\n".join(json.dumps({"prompt": p}) for p in ["Review the lamp.", "How was the tent?", "Review the lamp."])
    )
    config = ObjectiveRLConfig(output_dir=str(tmp_path), dataset=str(data), objective=["sentiment", "conciseness"])
    with pytest.raises(ConfigError, match="objectives_file"):
        prepare_objectives_and_prompts(config)
    fitted_objectives().save(tmp_path / "objectives.json")
    config.objectives_file = str(tmp_path / "objectives.json")
    objectives, prompts = prepare_objectives_and_prompts(config)
    assert prompts == ["Review the lamp.", "How was the tent?"]
    assert objectives.stats["conciseness"].std == 4.0
    config.objective = ["conciseness", "sentiment"]
    with pytest.raises(ConfigError, match="differs"):
        prepare_objectives_and_prompts(config)
