"""MORLHF: one RLOO run per grid point on sum_i w_i z_i; load_policy steers by the nearest trained point."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pluralign import load_policy
from pluralign.cli import main
from pluralign.generation.batched import generate_batched
from pluralign.models.loading import load_causal_lm
from pluralign.training.rl import DEMO_RL_SETTINGS, ScalarisedRLOOTrainer
from pluralign.worlds.reviews.corpus import generate_corpus
from pluralign.worlds.reviews.tiny_lm import build_tiny_gpt, tokenizer_texts, train_tokenizer

TINY_FLAGS = ["--max_steps", "2", "--per_device_train_batch_size", "4", "--num_generations", "2",
              "--max_completion_length", "8", "--save_strategy", "no", "--report_to", "none", "--logging_steps", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`pluralign train morlhf` on a local jsonl with a 3-point grid (w1 in {0, 0.5, 1})."""
    root = tmp_path_factory.mktemp("morlhf")
    corpus = generate_corpus(12, 2, seed=5)
    start = root / "start"
    build_tiny_gpt(start, train_tokenizer(tokenizer_texts(corpus), start, vocab_size=300), n_layer=1, n_embd=32)
    data = root / "data.jsonl"
    data.write_text("\n".join(json.dumps(s) for s in corpus))
    out = root / "model"
    argv = ["train", "morlhf", "--dataset", str(data), "--objective", "sentiment", "conciseness",
            "--model_name_or_path", str(start), "--output_dir", str(out), "--grid_points", "2", *TINY_FLAGS]  # fmt: skip
    assert main(argv) == 0
    return start, out, corpus, argv


def test_artifact_lists_one_run_per_grid_point(trained):
    _, out, _, _ = trained
    manifest = json.loads((out / "pluralign.json").read_text())
    assert manifest["method"] == "morlhf"
    assert manifest["objectives"] == ["sentiment", "conciseness"]
    assert [r["preference"] for r in manifest["extra"]["runs"]] == [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    for run in manifest["extra"]["runs"]:
        record = json.loads((out / run["path"] / "pluralign_run.json").read_text())
        assert record["weights"] == run["preference"] and record["steps"] == 2
        assert (out / run["path"] / "model.safetensors").is_file()
    # statistics were fitted on the dataset's responses (12 prompts x 2 responses)
    assert manifest["stats"]["conciseness"]["count"] == 24


def test_policy_generates_with_the_nearest_trained_run(trained):
    _, out, corpus, _ = trained
    policy = load_policy(out, device="cpu")
    assert policy.objectives == ["sentiment", "conciseness"]
    assert policy.nearest_run([0.8, 0.2]) == 2
    assert policy.nearest_run({"sentiment": 0.4, "conciseness": 0.6}) == 1
    assert policy.nearest_run([0.1, 0.9]) == 0
    assert policy.nearest_run(None) == 1  # equal weights
    prompts = sorted({s["prompt"] for s in corpus})[:4]
    gen = {"max_new_tokens": 8, "do_sample": False}
    run_model = load_causal_lm(str(out / "runs" / "w_1.000_0.000"), device="cpu")
    assert policy.generate(prompts, preference=[0.8, 0.2], **gen) == generate_batched(
        run_model, policy.tokenizer, prompts, **gen
    )
    many = policy.generate_many(prompts * 2, [[0.8, 0.2]] * 4 + [[0.1, 0.9]] * 4, **gen)
    assert many[:4] == policy.generate(prompts, preference=[1.0, 0.0], **gen)
    assert many[4:] == policy.generate(prompts, preference=[0.0, 1.0], **gen)


def test_rerun_skips_finished_runs(trained, capsys):
    _, out, _, argv = trained
    weights_file = out / "runs" / "w_0.500_0.500" / "model.safetensors"
    before = weights_file.stat().st_mtime_ns
    assert main(argv) == 0
    assert weights_file.stat().st_mtime_ns == before
    assert capsys.readouterr().out.count("already trained, skipped") == 3


def test_trainer_reward_is_the_scalarised_formula(trained):
    """The reward TRL optimises for grid point w is sum_i w_i (r_i - mean_i) / std_i with the saved statistics."""
    from datasets import Dataset

    from pluralign.models.loading import load_tokenizer
    from pluralign.objectives import ObjectiveSet
    from pluralign.training.rl import ObjectiveRLConfig

    start, out, corpus, _ = trained
    objectives = ObjectiveSet.from_dict(
        {"objectives": ["sentiment", "conciseness"], "stats": json.loads((out / "pluralign.json").read_text())["stats"]}
    )
    config = ObjectiveRLConfig(
        output_dir=str(out / "probe"), **{**DEMO_RL_SETTINGS, "per_device_train_batch_size": 4, "num_generations": 2}
    )
    trainer = ScalarisedRLOOTrainer(
        model=str(start), objectives=objectives, weights=[0.3, 0.7], args=config,
        train_dataset=Dataset.from_dict({"prompt": ["a", "b"]}), processing_class=load_tokenizer(str(start)),
    )  # fmt: skip
    assert len(trainer.reward_funcs) == 1
    prompts = [s["prompt"] for s in corpus[:6]]
    completions = [s["response"] for s in corpus[:6]]
    raw = objectives.score(prompts, completions)
    st = objectives.stats
    expected = [
        0.3 * (raw["sentiment"][i] - st["sentiment"].mean) / st["sentiment"].std
        + 0.7 * (raw["conciseness"][i] - st["conciseness"].mean) / st["conciseness"].std
        for i in range(6)
    ]
    got = trainer.reward_funcs[0](prompts=prompts, completions=completions)
    assert np.allclose(got, expected, atol=1e-9)
    assert not np.allclose(got, [sum(x) / 2 for x in zip(*objectives.zscores(raw).T)], atol=1e-3)


def test_demo_hook_trains_a_loadable_grid_with_overrides(trained, tmp_path):
    """``train_on_demo`` takes the world's start model, objectives and prompts; overrides shrink the run."""
    from types import SimpleNamespace

    from pluralign.objectives import ObjectiveSet
    from pluralign.worlds.reviews.morlhf import train_on_demo

    start, out, corpus, _ = trained
    objectives = ObjectiveSet.from_specs(["sentiment", "conciseness"])
    objectives.fit_stats(objectives.score([s["prompt"] for s in corpus], [s["response"] for s in corpus]))
    world = SimpleNamespace(
        base_model=str(start), objectives=objectives, train=corpus, generation_kwargs={"max_new_tokens": 6}
    )
    messages = []
    model_dir = train_on_demo(
        world, tmp_path / "demo", messages.append, grid_points=1, max_steps=1,
        per_device_train_batch_size=4, num_generations=2,
    )  # fmt: skip
    policy = load_policy(model_dir, device="cpu")
    assert policy.method == "morlhf" and len(policy.run_dirs) == 2
    assert sum("RLOO for 1 steps" in m for m in messages) == 2
    assert json.loads((model_dir / "runs" / "w_1.000_0.000" / "pluralign_run.json").read_text())["steps"] == 1
