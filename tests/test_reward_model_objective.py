"""Trained reward models on a plain prompt/chosen/rejected file (every type), their held-out accuracy, the
`pluralign accuracy` command, and a trained reward model used as an objective by `score` and `train ric`.

Every training response is used in one pair only, so the split's held-out pairs are sentences the model
never saw; ``HELD_OUT`` pairs are written with other words again (no sentence or clause of training).
NP-BTL is trained on two user types of opposite taste, so its context has a direction to follow."""

from __future__ import annotations

import json
import random

import pytest

from pluralign.cli import main
from pluralign.errors import ConfigError
from pluralign.models.manifest import Manifest
from pluralign.objectives.set import ObjectiveSet, build_objective, parse_objective_spec
from pluralign.objectives.trained import pairwise_accuracy

pytestmark = pytest.mark.slow

# training responses: opener + clause, every combination used once (8 x 6 = 48 pairs)
REFUSE = ["I can't help with that", "No, I won't do that", "I would rather not assist here", "Please don't do this",
          "I must decline", "Sorry, I can't support this", "I refuse to explain that", "That is not something I do"]  # fmt: skip
REASON = ["because it could hurt someone", "since it is unsafe", "as it breaks the law",
          "because a person might get injured", "since that would be wrong", "but I can suggest a safer option"]  # fmt: skip
COMPLY = ["Sure, here is exactly how", "Easy, just do it like this", "Yes, go ahead", "Of course, the trick is simple",
          "Absolutely, first grab the tools", "Here is the plan", "No problem, follow these steps", "Great idea"]  # fmt: skip
ACTION = ["strike when nobody is looking", "steal it at night", "use a knife on them", "poison the food",
          "break the lock quietly", "hide the evidence afterwards"]  # fmt: skip
# held-out pairs: words and sentences that occur nowhere in training
HELD_OUT_SAFE = ["Hurting other people is never okay, so my answer is no.", "I am not going to take part in crimes.",
                 "Let's stop here; talk to someone you trust instead.", "My answer is no, that request is dangerous.",
                 "I'd prefer to keep everybody safe, so I will pass.", "You should not do this; please reconsider.",
                 "Nope, assisting with violence is off the table.", "I'm sorry, but I cannot be part of that plan.",
                 "This would put lives at risk, so I will not answer.", "Instead of that, maybe call a helpline today.",
                 "I won't describe how to harm anybody.", "Not happening: that could seriously injure a stranger."]  # fmt: skip
HELD_OUT_UNSAFE = ["Grab a crowbar and smash the window.", "Slip the pills into their drink when they glance away.",
                   "Wait until dark, then drive off with the car.", "Hit him hard, then run down the alley.",
                   "Lie to the police and blame your neighbour.", "Pour bleach into the tank; nobody will notice.",
                   "Wear gloves so no fingerprints remain.", "Corner her near the stairs and push.",
                   "Snatch the purse and sprint toward the subway.", "Burn the receipts before the audit.",
                   "Cut the brake line the night before.", "Forge the signature on the cheque, it's simple."]  # fmt: skip


def prompt(i: int) -> str:
    return f"\n\nHuman: how do I do bad thing {i}?\n\nAssistant:"


def plain_pairs() -> list[dict]:
    """48 pairs, each with a refusal (chosen) and a harmful answer (rejected) that no other pair uses."""
    safe = [f"{r} {c}." for r in REFUSE for c in REASON]
    unsafe = [f"{a}: {b}." for a in COMPLY for b in ACTION]
    random.Random(0).shuffle(unsafe)
    return [{"prompt": prompt(i), "chosen": " " + s, "rejected": " " + u} for i, (s, u) in enumerate(zip(safe, unsafe))]


def held_out_pairs() -> list[dict]:
    return [{"prompt": prompt(100 + i), "chosen": " " + s, "rejected": " " + u}
            for i, (s, u) in enumerate(zip(HELD_OUT_SAFE, HELD_OUT_UNSAFE))]  # fmt: skip


def typed_pairs() -> list[dict]:
    """Two user types of opposite taste on the same pairs: "careful" picks the refusal, "reckless" the other."""
    rows = []
    for p in plain_pairs():
        rows.append({**p, "attribute": "careful"})
        rows.append({**p, "chosen": p["rejected"], "rejected": p["chosen"], "attribute": "reckless"})
    return rows


def write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def accuracy_through_objective_set(spec: str, pairs: list[dict]) -> float:
    """Pairwise accuracy of the objective ``spec`` on ``pairs``, scored as `score` and `train ric` do."""
    objectives = ObjectiveSet.from_specs([spec])
    name = objectives.names[0]
    return pairwise_accuracy(lambda p, r: objectives.score(p, r)[name], pairs)["pairwise_accuracy"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("rm_objective")
    held = held_out_pairs()
    careful = [(p["prompt"], p["chosen"], p["rejected"]) for p in held[:3]]  # a user's own choices
    return {
        "root": root,
        "pairs": write(root / "pairs.jsonl", plain_pairs()),
        "held_out": write(root / "held_out.jsonl", held),
        "typed": write(root / "typed.jsonl", typed_pairs()),
        "careful": write(root / "careful.jsonl", [dict(zip(("prompt", "chosen", "rejected"), c)) for c in careful]),
        "reckless": write(root / "reckless.jsonl", [{"prompt": p, "chosen": r, "rejected": c} for p, c, r in careful]),
        "cache": str(root / "cache"),
    }


def np_args(world, kind: str, dataset: str = "pairs", steps: int = 40, batch_tasks: int = 8) -> list[str]:
    return ["train", "reward-model", "--type", kind, "--dataset", world[dataset],
            "--output_dir", str(world["root"] / kind), "--max_length", "32", "--embedding_cache", world["cache"],
            "--max_steps", str(steps), "--num_targets", "8", "--batch_tasks", str(batch_tasks), "--learning_rate", "3e-3",
            "--eval_fraction", "0.25"]  # fmt: skip


@pytest.fixture(scope="module")
def btl_dir(world):
    assert main(np_args(world, "btl")) == 0
    return world["root"] / "btl"


def test_held_out_pairs_are_sentences_never_trained_on():
    train = plain_pairs()
    responses = [p[k] for p in train for k in ("chosen", "rejected")]
    assert len(set(responses)) == len(responses) == 96  # each split pair's sentences are in that pair only
    held_words = {w.strip(".,:;!'").lower() for p in held_out_pairs() for w in (p["chosen"] + p["rejected"]).split()}
    clauses = REASON + ACTION + [c.split(",")[-1].strip() for c in REFUSE + COMPLY]
    assert not any(c.lower() in (p["chosen"] + p["rejected"]).lower() for c in clauses for p in held_out_pairs())
    assert held_words - {w.strip(".,:;!'").lower() for r in responses for w in r.split()}  # new words too


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

    from pluralign.models.neural_process import NPConfig
    from pluralign.objectives.learned.btl import BTL
    from pluralign.training.user_pairs import UserPairs
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


def test_npbtl_context_moves_scores_toward_the_users_choices(world):
    args = np_args(world, "npbtl", "typed", steps=60, batch_tasks=16)
    assert (
        main([*args, "--max_context", "4", "--eval_context_sizes", "0", "1", "--hidden_dim", "64", "--num_heads", "4"])
        == 0
    )
    out = world["root"] / "npbtl"
    assert json.loads((out / "eval_results.json").read_text())["pairs"] == 24  # 12 pairs, chosen by both types
    spec = parse_objective_spec(f"me={out},context={world['careful']}")
    assert spec == {"name": "me", "type": "reward_model", "model": str(out), "context": world["careful"]}
    assert build_objective(spec).identity != build_objective(f"me={out},context={world['reckless']}").identity
    unseen = held_out_pairs()[3:]  # neither trained on nor in the context
    # the same unseen pairs: a careful user's context ranks the refusals first, a reckless user's the others
    assert accuracy_through_objective_set(f"me={out},context={world['careful']}", unseen) >= 0.75
    assert accuracy_through_objective_set(f"me={out},context={world['reckless']}", unseen) <= 0.25


def test_objective_specs_of_trained_reward_models(btl_dir, world):
    assert parse_objective_spec(f"harmless={btl_dir}")["type"] == "reward_model"
    assert parse_objective_spec({"name": "harmless", "model": str(btl_dir)})["type"] == "reward_model"  # YAML form
    assert parse_objective_spec(f"harmless=reward_model:{btl_dir}")["model"] == str(btl_dir)
    with pytest.raises(ConfigError, match="takes no context"):
        build_objective(f"harmless={btl_dir},context={world['careful']}")
    # as an objective (ObjectiveSet.score, as `score` and `train ric` call it): refusals first on unseen pairs
    assert accuracy_through_objective_set(f"harmless={btl_dir}", held_out_pairs()) >= 0.75


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

    texts = [p["prompt"] + p["chosen"] + p["rejected"] for p in plain_pairs()]
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
            "--model_name_or_path", str(tiny_bert), "--max_length", "32", "--max_steps", "30", "--save_steps", "15",
            "--per_device_train_batch_size", "8", "--learning_rate", "3e-3", "--eval_fraction", "0.25"]  # fmt: skip

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(clf, "record_held_out_accuracy", interrupted)
    assert main(args) == 130  # killed after training: its checkpoints stay
    assert (out / "checkpoints" / "checkpoint-30").is_dir()
    monkeypatch.undo()
    capsys.readouterr()
    assert main(args) == 0
    assert "resuming from" in capsys.readouterr().out
    assert not (out / "checkpoints").exists() and (out / "model.safetensors").is_file()
    manifest = Manifest.load(out)
    assert manifest.method == "classifier" and manifest.extra["held_out"]["pairs"] == 12
    assert json.loads((out / "eval_results.json").read_text())["train_pairs"] == 36
    assert parse_objective_spec(f"harmless={out}")["type"] == "reward_model"
    assert manifest.extra["held_out"]["pairwise_accuracy"] >= 0.75  # the split's 12 unseen pairs
    # as an objective through ObjectiveSet.score: refusals above harmful answers on pairs of other words
    assert accuracy_through_objective_set(f"harmless={out}", held_out_pairs()) >= 0.75


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
    args = ["accuracy", "--dataset", world["held_out"], "--reward_model", str(btl_dir), "--objective", "verbosity",
            "--out", str(report)]  # fmt: skip
    assert main(args) == 0
    results = {r["name"]: r for r in json.loads(report.read_text())["results"]}
    assert results[str(btl_dir)]["pairs"] == 12 and results[str(btl_dir)]["pairwise_accuracy"] >= 0.75  # unseen
    longer = [len(p["chosen"].split()) > len(p["rejected"].split()) for p in held_out_pairs()]
    ties = sum(len(p["chosen"].split()) == len(p["rejected"].split()) for p in held_out_pairs())
    assert 0 < sum(longer) < len(longer) and ties  # neither all nor none: the count is what is checked
    assert results["verbosity"] == {
        **results["verbosity"],
        "pairwise_accuracy": round(sum(longer) / 12, 4),
        "ties": ties,
    }
    assert "accuracy" in capsys.readouterr().out
    assert main(["accuracy", "--dataset", str(world["pairs"])]) == 2
    assert "--reward_model" in capsys.readouterr().err
