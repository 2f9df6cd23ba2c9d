"""RiC as the reference implementation does it (issue 13, items 2-4): the offline part of the online buffer,
the desired-reward bounds, the online SFT length in steps. SFT and generation are stubbed, so the
pipeline's own wiring runs in about a second."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pluralign.methods.ric import trainer as ric_train
from pluralign.methods.ric.bounds import desired_bounds, gaussian_bounds
from pluralign.methods.ric.buffer import offline_selection
from pluralign.methods.ric.config import RiCConfig


def _data(path: Path) -> Path:
    rng = np.random.default_rng(0)
    words = ["great", "fine", "bad", "ok", "lovely", "awful", "nice", "meh"]
    rows = []
    for i in range(120):
        n = int(rng.integers(1, 15))
        rows.append({"prompt": f"Review {i}:", "response": " ".join(rng.choice(words, n))})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def stubbed(monkeypatch, tmp_path):
    """train_ric with SFT and online generation replaced by recorders."""
    calls: dict[str, list] = {"sft": [], "generate": []}

    def fake_sft(model, samples, args, output_dir, **kwargs):
        final = Path(output_dir) / "final"
        final.mkdir(parents=True, exist_ok=True)
        (final / "config.json").write_text("{}")
        calls["sft"].append({"dir": str(output_dir), "kwargs": kwargs, "n": len(samples)})
        return final

    def fake_generate(config, model, tokenizer, samples, objectives, template, stage, it, log, low, high, engines=None):
        calls["generate"].append((np.asarray(low).tolist(), np.asarray(high).tolist()))
        # long, flat generations: their batch quantiles lie far below the offline data's
        return [{"i": j, "prompt": s["prompt"], "response": "word " * (30 + j % 7)} for j, s in enumerate(samples[:40])]

    monkeypatch.setattr(ric_train, "run_sft", fake_sft)
    monkeypatch.setattr(ric_train, "_online_generate", fake_generate)
    monkeypatch.setattr(ric_train, "_tokenizer", lambda config: None)

    def run(**overrides) -> tuple[Path, dict]:
        out = tmp_path / "run"
        config = RiCConfig(
            output_dir=str(out),
            model_name_or_path="unused",
            dataset=str(_data(tmp_path / "train.jsonl")),
            objective=["sentiment", "conciseness"],
            response_marker=None,
            online_iterations=2,
            online_offline_samples=20,
            report_to="none",
            **overrides,
        )
        ric_train.train_ric(config, progress=None)
        return out, calls

    return run


def test_offline_buffer_uses_the_offline_quantiles_and_a_fresh_subset_per_iteration(stubbed):
    out, _ = stubbed()
    z = np.array(
        [
            json.loads(line)["z"]
            for line in (out / "online_1" / "buffer.jsonl").read_text().splitlines()
            if not json.loads(line)["response"].startswith("word")
        ]
    )
    # the offline data's own 0.7-quantiles, computed from every offline sample's z-scores
    from pluralign.objectives import ObjectiveSet

    objectives = ObjectiveSet.load(out / "objectives.json")
    from pluralign.data.loading import load_any, to_samples
    from pluralign.objectives.scoring import ScoreCache, score_samples

    samples = to_samples(load_any(str(out.parent / "train.jsonl")), response_marker=None)
    all_z = objectives.zscores(score_samples(samples, objectives, ScoreCache(out / "score_cache.sqlite")))
    thr = np.quantile(all_z, 0.7, axis=0)
    assert len(z) == 20
    assert ((z >= thr[None, :] - 1e-9).any(axis=1)).all()  # every offline row is on the offline frontier
    # another subset in the second iteration (the reference reshuffles each time)
    second = [
        json.loads(line)["prompt"]
        for line in (out / "online_2" / "buffer.jsonl").read_text().splitlines()
        if not json.loads(line)["response"].startswith("word")
    ]
    first = [
        json.loads(line)["prompt"]
        for line in (out / "online_1" / "buffer.jsonl").read_text().splitlines()
        if not json.loads(line)["response"].startswith("word")
    ]
    assert len(second) == 20 and set(first) != set(second)


def test_offline_selection_is_independent_of_online_scores():
    z = np.random.default_rng(1).standard_normal((500, 2))
    picked, thr = offline_selection(z, 0.7, 10_000, np.random.default_rng(0))
    np.testing.assert_allclose(thr, np.quantile(z, 0.7, axis=0))
    expected = np.flatnonzero((z >= thr).any(axis=1))
    assert picked.tolist() == expected.tolist()  # n larger than the frontier: all of it
    sub, _ = offline_selection(z, 0.7, 50, np.random.default_rng(0))
    assert len(sub) == 50 and set(sub) <= set(expected)


def test_gaussian_bounds_reach_the_manifest_and_steer_inference(stubbed):
    out, calls = stubbed(reward_bounds="gaussian", online_max_steps=7)
    lo, hi = gaussian_bounds(2)
    assert -4.8 < lo[0] < -3.9 and 3.9 < hi[0] < 4.8
    assert calls["generate"][0] == (lo.tolist(), hi.tolist())  # online sampling uses them
    manifest = json.loads((out / "pluralign.json").read_text())
    assert manifest["extra"]["reward_bounds"] == "gaussian"
    assert manifest["extra"]["desired_low"] == lo.tolist() and manifest["extra"]["desired_high"] == hi.tolist()
    from pluralign.methods.ric.policy import RiCPolicy
    from pluralign.models.manifest import Manifest
    from pluralign.preferences.weights import Preference

    policy = RiCPolicy(None, None, Manifest.load(out), out)
    wanted = policy.desired_rewards(Preference(("sentiment", "conciseness"), (1.0, 0.0)))
    np.testing.assert_allclose(wanted, [hi[0], lo[1]])  # inference asks within the same bounds
    # online SFT length in steps: passed to TRL as max_steps for every online iteration
    online = [c for c in calls["sft"] if "online_" in c["dir"]]
    assert len(online) == 2 and all(c["kwargs"]["max_steps"] == 7 for c in online)


def test_data_bounds_stay_the_default_and_bad_values_are_one_line_errors(stubbed):
    from pluralign.errors import ConfigError

    out, calls = stubbed()
    stats = json.loads((out / "objectives.json").read_text())["stats"]
    manifest = json.loads((out / "pluralign.json").read_text())
    assert manifest["extra"]["reward_bounds"] == "data"
    assert manifest["extra"]["desired_high"][1] < 3.0  # conciseness: the data's z max, not +4.3
    assert all(c["kwargs"]["max_steps"] == -1 for c in calls["sft"] if "online_" in c["dir"])
    assert set(stats) == {"sentiment", "conciseness"}
    with pytest.raises(ConfigError, match="reward_bounds"):
        desired_bounds("normal", np.zeros(2), np.ones(2))


def test_online_stage_samples_pure_top_p_like_the_reference(tmp_path, monkeypatch):
    """Issue 23 item 9: the reference samples online with top_k = 0 (no top-k cut); transformers' default
    top_k of 50 applied whenever the stage did not say so."""
    import pluralign.generation.batched as batched
    import pluralign.models.loading as loading
    from pluralign.objectives import ObjectiveSet
    from pluralign.preferences.tags import TagTemplate

    seen: list[dict] = []

    def spy(backend, model, tokenizer, prompts, **kwargs):
        seen.append(kwargs)
        return ["fine"] * len(prompts)

    monkeypatch.setattr(batched, "generate_texts", spy)
    monkeypatch.setattr(loading, "load_causal_lm", lambda *args, **kwargs: None)
    config = RiCConfig(output_dir=str(tmp_path), online_prompts=3, report_to="none")
    samples = [{"prompt": f"Review {i}:", "response": "ok"} for i in range(5)]
    rows = ric_train._online_generate(
        config, "unused", None, samples, ObjectiveSet.from_specs(["conciseness"]), TagTemplate(response_marker=None),
        tmp_path, 1, lambda _m: None, np.array([-1.0]), np.array([1.0]),
    )  # fmt: skip
    assert len(rows) == 3 and seen
    assert all(k["do_sample"] and k["top_k"] == 0 and k["top_p"] == 0.9 and k["temperature"] == 0.7 for k in seen)


def test_evaluation_samples_pure_top_p_and_each_backend_gets_its_spelling():
    """`pluralign evaluate` samples as the reference's evaluation (top_k 0); greedy drops the sampling options;
    vLLM spells "no top-k" -1 (older vLLM rejects 0)."""
    from pluralign.commands.evaluate import SAMPLING, build_parser
    from pluralign.config import generation_kwargs
    from pluralign.generation.continuous import generation_config
    from pluralign.generation.vllm import to_sampling_kwargs

    base = ["--model", "m", "--out", "o"]
    assert generation_kwargs(build_parser().parse_args(base), SAMPLING)["top_k"] == 0
    assert generation_kwargs(build_parser().parse_args([*base, "--top_k", "40"]), SAMPLING)["top_k"] == 40
    greedy = generation_kwargs(build_parser().parse_args([*base, "--no-do_sample"]), SAMPLING)
    assert not {"top_k", "top_p", "temperature"} & set(greedy)
    assert to_sampling_kwargs({**SAMPLING, "max_new_tokens": 8})["top_k"] == -1
    assert "top_k" not in to_sampling_kwargs({"do_sample": False, "top_k": 0})

    class Tok:
        eos_token_id, pad_token_id = 2, 0

    assert generation_config(None, Tok(), **SAMPLING).top_k == 0
