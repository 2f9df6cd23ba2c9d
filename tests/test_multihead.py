"""Multi-head classification reward model: labels, training with per-head accuracy, loading, objective source."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from pluralign.errors import ConfigError, DataError
from pluralign.reward_models.multihead.trainer import bin_scores, ratings_to_classes

TINY_BACKBONE = '{"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}'


def test_bin_scores_quantile_and_uniform():
    classes, edges = bin_scores([1, 2, 3, 4, 5, 6, 7, 8], 4, "quantile")
    assert edges == pytest.approx([2.75, 4.5, 6.25])
    assert classes.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    classes, edges = bin_scores([0.0, 0.1, 0.5, 0.9, 1.0], 2, "uniform")
    assert edges == pytest.approx([0.5])
    assert classes.tolist() == [0, 0, 1, 1, 1]  # a score on an edge goes to the upper class


def test_ratings_to_classes_checks_range_and_integers():
    assert ratings_to_classes([1, 5, 3], 5, rating_min=1, name="r").tolist() == [0, 4, 2]
    with pytest.raises(DataError, match="outside 0..4"):
        ratings_to_classes([0, 5], 5, rating_min=0, name="helpfulness")
    with pytest.raises(DataError, match="not an integer rating"):
        ratings_to_classes([0.5], 5, rating_min=0, name="helpfulness")


def synthetic_rows(n: int, seed: int = 0) -> list[dict]:
    """positivity: a 0-4 rating = number of 'great' words; score_length: word count (binned into 3)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        good = rng.randint(0, 4)
        filler = rng.randint(0, 8)
        words = ["great"] * good + ["lamp"] * filler
        rng.shuffle(words)
        rows.append(
            {
                "prompt": "Review the lamp.",
                "response": " ".join(words) or "ok",
                "positivity": good,
                "score_length": float(len(words)),
            }
        )
    return rows


@pytest.fixture(scope="module")
def trained_rm(tmp_path_factory):
    from pluralign.reward_models.multihead.trainer import run

    tmp = tmp_path_factory.mktemp("mh")
    data = tmp / "ratings.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rows(500)))
    out = tmp / "rm"
    argv = [
        "--dataset",
        str(data),
        "--output_dir",
        str(out),
        "--objective",
        "positivity",
        "length",
        "--num_classes",
        "5",
        "3",
        "--from_scratch",
        "--backbone_config_overrides",
        TINY_BACKBONE,
        "--input_format",
        "response",
        "--max_length",
        "24",
        "--num_train_epochs",
        "6",
        "--learning_rate",
        "5e-3",
        "--per_device_train_batch_size",
        "16",
        "--eval_fraction",
        "0.2",
        "--use_cpu",
        "--disable_tqdm",
        "true",
    ]
    assert run(argv) == 0
    return out


def test_training_beats_majority_class_on_held_out_split(trained_rm):
    metrics = json.loads((trained_rm / "head_metrics.json").read_text())["heads"]
    for name in ("positivity", "length"):
        assert metrics[name]["n"] == 100
        assert metrics[name]["accuracy"] > metrics[name]["majority_baseline"] + 0.25, metrics
    spec = json.loads((trained_rm / "multihead.json").read_text())
    assert spec["num_classes"] == [5, 3]
    assert len(spec["bin_edges"]["length"]) == 2 and "positivity" not in spec["bin_edges"]
    assert [len(spec["class_stats"][n]) for n in ("positivity", "length")] == [5, 3]
    assert (trained_rm / "heads.safetensors").is_file() and (trained_rm / "backbone" / "model.safetensors").is_file()


def test_loaded_reward_model_gives_class_probabilities_and_scores(trained_rm):
    from pluralign import load_reward_model

    rm = load_reward_model(trained_rm)
    prompts = ["Review the lamp."] * 2
    responses = ["great great great great", "lamp lamp"]
    probs = rm.probabilities(prompts, responses)
    assert probs["positivity"].shape == (2, 5) and probs["length"].shape == (2, 3)
    np.testing.assert_allclose(probs["positivity"].sum(1), 1.0, rtol=1e-5)
    expected = rm.head_scores(prompts, responses, reduce="expected")["positivity"]
    assert expected[0] > expected[1] + 1.0  # four 'great' vs none
    scores = rm.score(prompts, responses, head="positivity")
    assert 0.0 <= scores[1] < scores[0] <= 1.0
    with pytest.raises(ConfigError, match="no head 'tone'"):
        rm.score(prompts, responses, head="tone")


def test_head_is_an_objective_source(trained_rm):
    from pluralign.objectives import ObjectiveSet

    objectives = ObjectiveSet.from_specs(
        [
            f"positivity=multihead:{trained_rm}",
            {"name": "short", "type": "multihead", "model": str(trained_rm), "head": "length", "reduce": "argmax"},
        ]
    )
    scores = objectives.score(["p", "p"], ["great great great great", "great"])
    assert scores["positivity"][0] > scores["positivity"][1]
    assert set(scores["short"]) <= {0.0, 1.0, 2.0}
    with pytest.raises(Exception, match="not a multi-head reward model"):
        ObjectiveSet.from_specs([f"x=multihead:{trained_rm / 'backbone'}"])


def test_num_classes_must_match_objectives(tmp_path):
    from pluralign.reward_models.multihead.config import MultiHeadRewardConfig

    config = MultiHeadRewardConfig(output_dir=str(tmp_path), num_classes=[5, 3, 2], objective=["a", "b"])
    with pytest.raises(ConfigError, match="num_classes has 3 values for 2 objectives"):
        config.classes_per_objective(["a", "b"])
    with pytest.raises(ConfigError, match="output_dir"):
        MultiHeadRewardConfig()
