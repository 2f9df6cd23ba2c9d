"""Rewarded Soups: one RLOO policy per objective; theta(w) = sum_i w_i theta_i, cached per w."""

from __future__ import annotations

import json

import pytest
import torch

from pluralign import load_policy
from pluralign.cli import main
from pluralign.generation.batched import generate_batched
from pluralign.methods.soups.policy import average_state_dicts
from pluralign.models.loading import load_causal_lm
from pluralign.worlds.reviews.corpus import generate_corpus
from pluralign.worlds.reviews.tiny_lm import build_tiny_gpt, tokenizer_texts, train_tokenizer

TINY_FLAGS = ["--max_steps", "2", "--per_device_train_batch_size", "4", "--num_generations", "2",
              "--max_completion_length", "8", "--save_strategy", "no", "--report_to", "none",
              "--learning_rate", "1e-2"]  # fmt: skip
GEN = {"max_new_tokens": 10, "do_sample": False}


def train(root, *extra: str):
    corpus = generate_corpus(10, 2, seed=7)
    start = root / "start"
    build_tiny_gpt(start, train_tokenizer(tokenizer_texts(corpus), start, vocab_size=300), n_layer=1, n_embd=32)
    data = root / "data.jsonl"
    data.write_text("\n".join(json.dumps(s) for s in corpus))
    out = root / "model"
    argv = ["train", "soups", "--dataset", str(data), "--objective", "sentiment", "conciseness",
            "--model_name_or_path", str(start), "--output_dir", str(out), *TINY_FLAGS, *extra]  # fmt: skip
    assert main(argv) == 0
    return start, out, sorted({s["prompt"] for s in corpus})[:5]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train(tmp_path_factory.mktemp("soups"))


def test_one_run_per_objective_from_the_same_start(trained):
    _, out, _ = trained
    manifest = json.loads((out / "pluralign.json").read_text())
    assert manifest["method"] == "soups"
    assert manifest["extra"]["runs"] == {"sentiment": "runs/sentiment", "conciseness": "runs/conciseness"}
    for i, name in enumerate(["sentiment", "conciseness"]):
        record = json.loads((out / "runs" / name / "pluralign_run.json").read_text())
        assert record["weights"] == [1.0 if j == i else 0.0 for j in range(2)]


def test_one_hot_soup_reproduces_the_per_objective_policy_exactly(trained):
    _, out, prompts = trained
    policy = load_policy(out, device="cpu")
    for name, w in [("sentiment", [1.0, 0.0]), ("conciseness", [0.0, 1.0])]:
        run = load_causal_lm(str(out / "runs" / name), device="cpu")
        soup = policy.model_for(w)
        for key, value in run.state_dict().items():
            assert torch.equal(soup.state_dict()[key], value), key
        assert policy.generate(prompts, preference=w, **GEN) == generate_batched(run, policy.tokenizer, prompts, **GEN)


def test_soup_interpolates_weights_and_is_cached_per_preference(trained):
    _, out, prompts = trained
    policy = load_policy(out, device="cpu")
    a, b = (load_causal_lm(str(out / "runs" / n), device="cpu").state_dict() for n in ["sentiment", "conciseness"])
    soup = policy.model_for({"sentiment": 0.3, "conciseness": 0.7}).state_dict()
    differs = 0
    for key in a:
        assert torch.allclose(soup[key], 0.3 * a[key] + 0.7 * b[key], atol=1e-6), key
        differs += not torch.equal(a[key], b[key])
    assert differs > 0  # the two runs really moved apart, so the soup is not trivially equal to either
    assert policy.model_for([0.3, 0.7]) is policy.model_for({"sentiment": 0.3, "conciseness": 0.7})
    assert policy.model_for([0.3, 0.7]) is not policy.model_for([0.7, 0.3])
    many = policy.generate_many(prompts * 2, [[0.3, 0.7]] * 5 + [[1.0, 0.0]] * 5, **GEN)
    assert many[5:] == policy.generate(prompts, preference=[1.0, 0.0], **GEN)


def test_average_state_dicts_keeps_integer_buffers_and_checks_lengths():
    sds = [
        {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor([3])},
        {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor([3])},
    ]
    avg = average_state_dicts(sds, [0.25, 0.75])
    assert torch.allclose(avg["w"], torch.tensor([2.5, 5.0])) and avg["n"].dtype == torch.int64
    with pytest.raises(ValueError):
        average_state_dicts(sds, [1.0])


def test_lora_soup_is_base_plus_weighted_adapter_deltas(tmp_path):
    """With --use_peft each run is an adapter; one-hot gives that run's merged model, w gives the delta average."""
    start, out, prompts = train(tmp_path, "--use_peft", "--lora_r", "4", "--lora_target_modules", "c_attn")
    assert (out / "runs" / "sentiment" / "adapter_config.json").is_file()
    policy = load_policy(out, device="cpu")
    base = load_causal_lm(str(start), device="cpu").state_dict()
    merged = [
        load_causal_lm(str(out / "runs" / n), device="cpu", merge_adapter=True).state_dict() for n in policy.objectives
    ]
    one_hot = policy.model_for([0.0, 1.0]).state_dict()
    assert all(torch.equal(one_hot[k], merged[1][k]) for k in merged[1])
    soup = policy.model_for([0.5, 0.5]).state_dict()
    key = next(k for k in base if "c_attn.weight" in k)
    expected = base[key] + 0.5 * (merged[0][key] - base[key]) + 0.5 * (merged[1][key] - base[key])
    assert not torch.equal(merged[0][key], base[key])
    assert torch.allclose(soup[key], expected, atol=1e-6)


def test_a_soup_steered_by_choices_is_driven_by_the_corner_of_the_inferred_weights(trained):
    """``context=``: the choices are scored by the objectives the soup was trained with (its manifest), the
    weights inferred, and the soup driven by their corner (``SoupsPolicy.context_driver``)."""
    from pluralign.generation.policy import SteerablePolicy
    from pluralign.objectives import ObjectiveSet, ObjectiveStats
    from pluralign.preferences.inference import infer_preference

    _, out, prompts = trained
    policy = load_policy(out, device="cpu")
    # a user who picks the shorter answer at the same sentiment: conciseness
    context = [(p, "Fine.", "Fine, it is fine, it is fine and it is fine, it is.") for p in prompts]
    objectives = ObjectiveSet.from_specs(policy.manifest.objective_specs)
    objectives.stats = {n: ObjectiveStats(**policy.manifest.stats[n]) for n in policy.objectives}
    mean = infer_preference(context, objectives)
    assert mean.weights[1] > mean.weights[0] and mean.weights[1] < 1  # the weights lean to conciseness
    assert policy.preference_from_context(context).weights == (0.0, 1.0)  # the soup is driven by the corner
    assert policy.generate(prompts, context=context, **GEN) == policy.generate(prompts, preference=[0.0, 1.0], **GEN)
    assert SteerablePolicy.context_driver == "mean"  # other policies (RiC) are driven by the weights themselves
