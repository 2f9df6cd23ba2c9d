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


SAFE = ["I can't help with that, it is unsafe", "No, please talk to someone you trust", "I won't do that, sorry"]
UNSAFE = ["Sure, grab a knife and go", "Easy, steal it at night", "Yes, poison the food quietly"]


@pytest.fixture(scope="module")
def tiny_pretrained_encoder(tmp_path_factory):
    """A 3-block BERT (hidden 16, random weights) saved as a pretrained backbone, with MiniLM's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from pluralign.models.embeddings import resolve_encoder

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_encoder")
    tok = AutoTokenizer.from_pretrained(resolve_encoder(None))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                     intermediate_size=32)  # fmt: skip
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_heads_on_cached_features_rank_held_out_pairs_and_reuse_the_cache(tiny_pretrained_encoder, tmp_path, capsys):
    """From a pairs file, a pretrained backbone of more than 2 blocks is frozen: its pooled features are computed
    once (cached), the head is a softmax regression (chosen / rejected) fitted on them, and the saved model
    ranks unseen pairs of a separable set."""
    import torch
    from safetensors.torch import load_file

    from pluralign.cli import main
    from pluralign.models.manifest import Manifest

    pairs = [{"prompt": f"\n\nHuman: how do I do bad thing {i}?\n\nAssistant:", "chosen": " " + SAFE[i % 3],
              "rejected": " " + UNSAFE[(i + i // 3) % 3]} for i in range(48)]  # fmt: skip
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    cache = tmp_path / "features"
    out = tmp_path / "mh"
    args = ["train", "reward-model", "--type", "multihead", "--dataset", str(data), "--output_dir", str(out),
            "--model_name_or_path", str(tiny_pretrained_encoder), "--pooling_layer", "2", "--max_length", "48",
            "--eval_fraction", "0.25", "--feature_cache", str(cache), "--report_to", "none"]  # fmt: skip
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "training the heads on cached features" in first and "96 computed" in first  # 2 responses per pair
    manifest = Manifest.load(out)
    assert manifest.objectives == ["preference"] and manifest.extra["trainable_layers"] == 0
    held = manifest.extra["held_out"]
    assert held["pairs"] == 12 and held["pairwise_accuracy"] >= 0.9  # pairs no head saw
    assert {"features", "train", "evaluate"} <= set(held["stage_seconds"])
    backbone = load_file(str(out / "backbone" / "model.safetensors"))
    assert not any(k.startswith(("encoder.layer.2.", "layer.2.")) for k in backbone)  # block 3 was dropped
    original = load_file(str(tiny_pretrained_encoder / "model.safetensors"))
    key = next(k for k in backbone if k.endswith("layer.1.output.dense.weight"))
    assert torch.equal(backbone[key], original[key])  # frozen
    assert main(args) == 0  # another run (a sweep, another split) computes nothing again
    assert "0 computed" in capsys.readouterr().out


def test_softmax_head_fits_the_classes_and_its_penalty_shrinks_it():
    import torch

    from pluralign.training.softmax_head import choose_l2, fit_softmax_head, logits

    torch.manual_seed(0)
    centres = torch.randn(3, 6) * 3
    y = torch.randint(0, 3, (300,))
    x = (centres[y] + torch.randn(300, 6)) * 50.0 + 7.0  # any scale and offset: features are standardised
    weight, bias = fit_softmax_head(x, y, 3, l2=0.01)
    assert weight.shape == (3, 6) and bias.shape == (3,)
    assert (logits(x, weight, bias).argmax(-1) == y).float().mean() > 0.95
    strong, _ = fit_softmax_head(x, y, 3, l2=10.0)
    assert strong.norm() < weight.norm()
    noise_x, noise_y = torch.randn(40, 30), torch.randint(0, 2, (40,))  # nothing to learn: the strongest penalty
    assert choose_l2(noise_x, noise_y, 2, groups=[str(i // 2) for i in range(40)]) == 10.0
