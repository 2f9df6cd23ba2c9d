"""Trained reward models on a plain prompt/chosen/rejected file (every type), their held-out accuracy, the
`pluralign accuracy` command, and a trained reward model used as an objective by `score` and `train ric`."""

from __future__ import annotations

import json
import random

import pytest

from pluralign.cli import main
from pluralign.errors import ConfigError
from pluralign.objectives.set import ObjectiveSet, build_objective, parse_objective_spec
from pluralign.training.manifest import Manifest

pytestmark = pytest.mark.slow

REFUSALS = ["I can't help with that, it could hurt someone.", "No, I won't do that; it is unsafe.",
            "Please don't; I can suggest a safer option.", "I would rather not help with harming anyone."]  # fmt: skip
HARMFUL = ["Sure, here is exactly how to do it.", "Easy: first get a knife, then go.",
           "Yes, steal it at night when nobody looks.", "Just poison it, that works well."]  # fmt: skip


def plain_pairs(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [
        {"prompt": f"\n\nHuman: how do I do bad thing {i}?\n\nAssistant:", "chosen": " " + rng.choice(REFUSALS),
         "rejected": " " + rng.choice(HARMFUL)}
        for i in range(n)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("rm_objective")
    pairs = root / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in plain_pairs(48)))
    context = root / "my_choices.jsonl"
    context.write_text("".join(json.dumps(p) + "\n" for p in plain_pairs(3, seed=1)))
    return {"root": root, "pairs": pairs, "context": context, "cache": str(root / "cache")}


def np_args(world, kind: str) -> list[str]:
    return ["train", "reward-model", "--type", kind, "--dataset", str(world["pairs"]),
            "--output_dir", str(world["root"] / kind), "--max_length", "32", "--embedding_cache", world["cache"],
            "--max_steps", "40", "--num_targets", "8", "--batch_tasks", "8", "--learning_rate", "3e-3",
            "--eval_fraction", "0.25"]  # fmt: skip


@pytest.fixture(scope="module")
def btl_dir(world):
    assert main(np_args(world, "btl")) == 0
    return world["root"] / "btl"


def test_btl_on_plain_pairs_records_held_out_accuracy(btl_dir):
    result = json.loads((btl_dir / "eval_results.json").read_text())
    assert result["pairs"] == 12 and result["train_pairs"] == 36 and result["pairwise_accuracy"] >= 0.75
    assert Manifest.load(btl_dir).extra["held_out"]["pairwise_accuracy"] == result["pairwise_accuracy"]


def test_btl_stops_early_on_a_validation_split_by_pair(world, tmp_path):
    args = np_args(world, "btl") + ["--output_dir", str(tmp_path / "btl_es"), "--validation_fraction", "0.25",
                                    "--eval_every", "5", "--early_stopping_patience", "2", "--max_steps", "400",
                                    "--weight_decay", "0.01"]  # fmt: skip
    assert main(args) == 0
    result = json.loads((tmp_path / "btl_es" / "eval_results.json").read_text())
    assert result["train_pairs"] == 27 and result["pairs"] == 12  # 9 of the 36 training pairs validate
    assert result["best_step"] % 5 == 0 and result["best_step"] <= result["stopped_step"] <= 400


def test_train_tasks_keeps_the_best_validated_weights_and_stops_after_patience():
    import torch

    from pluralign.data.user_pairs import UserPairs
    from pluralign.models.neural_process import NPConfig
    from pluralign.reward_models.btl.model import BTL
    from pluralign.training.user_tasks import TaskSampler, train_tasks

    torch.manual_seed(0)
    users = {"u": UserPairs(torch.randn(40, 4), torch.randn(40, 4))}
    model = BTL(NPConfig(input_dim=4, hidden_dim=0, latent_dim=0))
    losses = iter([5.0, 4.0, 3.0, 3.5, 4.0, 1.0])  # best at the 3rd check; 2 worse checks end it
    seen = {}

    def validate(m):
        seen[len(seen) + 1] = m.linear.weight.detach().clone()
        return next(losses)

    stats = train_tasks(model, TaskSampler(users, num_targets=8, max_context=0), steps=100, batch_size=2, lr=0.1,
                        validate=validate, eval_every=10, patience=2)  # fmt: skip
    assert stats["best_step"] == 30 and stats["stopped_step"] == 50 and stats["validation_loss"] == 3.0
    assert torch.equal(model.linear.weight, seen[3]) and not torch.equal(model.linear.weight, seen[5])


def test_npbtl_on_plain_pairs_with_a_fixed_context(world):
    args = np_args(world, "npbtl") + ["--max_context", "4", "--eval_context_sizes", "0", "1"]
    assert main(args) == 0
    out = world["root"] / "npbtl"
    assert json.loads((out / "eval_results.json").read_text())["pairs"] == 12
    spec = parse_objective_spec(f"me={out},context={world['context']}")
    assert spec == {"name": "me", "type": "reward_model", "model": str(out), "context": str(world["context"])}
    with_ctx, without = build_objective(spec), build_objective(f"me={out}")
    prompts, responses = ["Q"] * 2, [REFUSALS[0], HARMFUL[0]]
    assert with_ctx.identity != without.identity
    assert len(with_ctx.score(prompts, responses)) == 2
    assert with_ctx.score(prompts, responses) != without.score(prompts, responses)


def test_objective_specs_of_trained_reward_models(btl_dir, world):
    assert parse_objective_spec(f"harmless={btl_dir}")["type"] == "reward_model"
    assert parse_objective_spec({"name": "harmless", "model": str(btl_dir)})["type"] == "reward_model"  # YAML form
    assert parse_objective_spec(f"harmless=reward_model:{btl_dir}")["model"] == str(btl_dir)
    with pytest.raises(ConfigError, match="takes no context"):
        build_objective(f"harmless={btl_dir},context={world['context']}")
    scores = build_objective(f"harmless={btl_dir}").score(["Q", "Q"], [REFUSALS[1], HARMFUL[1]])
    assert scores[0] > scores[1]


def test_score_and_train_ric_with_a_trained_reward_model(btl_dir, world, tmp_path, capsys):
    from pluralign.worlds.reviews.tiny_lm import build_tiny_gpt, train_tokenizer

    out = tmp_path / "scored"
    assert (
        main(["score", "--dataset", str(world["pairs"]), "--objective", f"harmless={btl_dir}", "--out", str(out)]) == 0
    )
    rows = [json.loads(line) for line in (out / "scored.jsonl").read_text().splitlines()]
    assert len(rows) == 96 and all("score_harmless" in r for r in rows)
    chosen = [r["score_harmless"] for r in rows[0::2]]
    rejected = [r["score_harmless"] for r in rows[1::2]]
    assert sum(c > r for c, r in zip(chosen, rejected)) >= 40

    texts = [p["prompt"] + p["chosen"] + p["rejected"] for p in plain_pairs(48)]
    base = build_tiny_gpt(
        tmp_path / "gpt", train_tokenizer(texts, tmp_path / "gpt", vocab_size=300), n_layer=1, n_embd=32
    )
    yaml = tmp_path / "ric.yaml"
    yaml.write_text(f"objective:\n  - harmless={btl_dir}\n  - verbosity\n")
    ric = tmp_path / "ric"
    args = ["train", "ric", "--config", str(yaml), "--model_name_or_path", base, "--dataset", str(world["pairs"]),
            "--output_dir", str(ric), "--num_train_epochs", "1", "--online_iterations", "0", "--max_length", "64",
            "--per_device_train_batch_size", "16", "--report_to", "none", "--disable_tqdm", "true",
            "--gradient_checkpointing", "false", "--logging_steps", "1000", "--save_strategy", "no"]  # fmt: skip
    assert main(args) == 0
    manifest = Manifest.load(ric)
    assert manifest.objectives == ["harmless", "verbosity"]
    assert manifest.objective_specs[0]["type"] == "reward_model" and "harmless" in manifest.stats
    assert ObjectiveSet.from_dict({"objectives": manifest.objective_specs}).names == ["harmless", "verbosity"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from pluralign.models.embeddings import resolve_encoder

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_bert_backbone")
    tok = AutoTokenizer.from_pretrained(resolve_encoder(None))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, num_labels=1)  # fmt: skip
    BertForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_classifier_trains_resumes_and_is_an_objective(world, tiny_bert, tmp_path, monkeypatch, capsys):
    import pluralign.reward_models.classifier.trainer as clf

    out = tmp_path / "clf"
    args = ["train", "reward-model", "--type", "classifier", "--dataset", str(world["pairs"]), "--output_dir", str(out),
            "--model_name_or_path", str(tiny_bert), "--max_length", "32", "--max_steps", "4", "--save_steps", "2",
            "--per_device_train_batch_size", "8", "--learning_rate", "1e-3", "--eval_fraction", "0.25"]  # fmt: skip

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(clf, "record_held_out_accuracy", interrupted)
    assert main(args) == 130  # killed after training: its checkpoints stay
    assert (out / "checkpoints" / "checkpoint-4").is_dir()
    monkeypatch.undo()
    capsys.readouterr()
    assert main(args) == 0
    assert "resuming from" in capsys.readouterr().out
    assert not (out / "checkpoints").exists() and (out / "model.safetensors").is_file()
    manifest = Manifest.load(out)
    assert manifest.method == "classifier" and manifest.extra["held_out"]["pairs"] == 12
    assert json.loads((out / "eval_results.json").read_text())["train_pairs"] == 36
    assert parse_objective_spec(f"harmless={out}")["type"] == "reward_model"
    assert len(build_objective(f"harmless={out}").score(["Q"], ["A"])) == 1


def test_multihead_on_plain_pairs(world, tmp_path):
    out = tmp_path / "mh"
    args = ["train", "reward-model", "--type", "multihead", "--dataset", str(world["pairs"]), "--output_dir", str(out),
            "--from_scratch", "--backbone_config_overrides",
            '{"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}',
            "--max_length", "32", "--max_steps", "3", "--eval_fraction", "0.25", "--report_to", "none"]  # fmt: skip
    assert main(args) == 0
    manifest = Manifest.load(out)
    assert manifest.objectives == ["preference"] and manifest.extra["held_out"]["pairs"] == 12


def test_accuracy_command_compares_reward_models_and_objectives(btl_dir, world, tmp_path, capsys):
    report = tmp_path / "acc.json"
    args = ["accuracy", "--dataset", str(world["pairs"]), "--reward_model", str(btl_dir), "--objective", "verbosity",
            "--out", str(report)]  # fmt: skip
    assert main(args) == 0
    results = {r["name"]: r for r in json.loads(report.read_text())["results"]}
    assert results[str(btl_dir)]["pairs"] == 48 and results[str(btl_dir)]["pairwise_accuracy"] >= 0.8
    assert 0 <= results["verbosity"]["pairwise_accuracy"] <= 1
    assert "accuracy" in capsys.readouterr().out
    assert main(["accuracy", "--dataset", str(world["pairs"])]) == 2
    assert "--reward_model" in capsys.readouterr().err
