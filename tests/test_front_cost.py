"""The cost of a front: the FLOP model, the matched-quality block, snapshots along training."""

from __future__ import annotations

import json
import time

import pytest
import torch
from cost_model import (
    CurvePoint,
    TokenLedger,
    forward_flops,
    matched,
    paper_projection,
    plateaued,
    reward_model_parameters,
    rloo_tokens,
    train_flops,
    where_it_stops,
)
from snapshots import SnapshotCallback, Stopwatch, default_run_key, default_stage, materialise, tag_totals

from pluralign import load_policy
from pluralign.evaluation import evaluate_front


def test_flop_model_counts_6n_trained_2n_forward_and_lora_backward():
    assert train_flops(1000, 3) == 18000
    assert forward_flops(1000, 3) == 6000
    # LoRA: 4N through the frozen base (forward + activation gradients) + 6 N_trainable
    assert train_flops(1000, 1, trainable=10) == 4000 + 60
    assert train_flops(1000, 1, trainable=1000) == 6000  # all weights trainable: the plain count
    ledger = TokenLedger(trained=2, forward=5) + TokenLedger(scored=7)
    assert ledger.flops(100, reward_params=10) == 6 * 100 * 2 + 2 * 100 * 5 + 2 * 10 * 7


def test_rloo_tokens_count_the_reference_model_only_with_a_kl_penalty():
    with_kl, without = rloo_tokens(100, beta=0.05), rloo_tokens(100, beta=0.0)
    assert (with_kl.trained, with_kl.forward, with_kl.scored) == (100, 200, 100)
    assert without.forward == 100
    assert with_kl.flops(10) - without.flops(10) == 2 * 10 * 100


def test_reward_model_parameters_count_neural_models_only():
    class Rule:
        pass

    class Neural:  # like HFRewardModel once loaded: the model in a private attribute
        def __init__(self):
            self._model = torch.nn.Linear(4, 3)  # 15 parameters

    class Declared:
        num_parameters = 7

    assert reward_model_parameters([Rule(), Neural(), Declared()]) == 22


def curve(points):
    return [CurvePoint(f"p{i}", s, f, h) for i, (s, f, h) in enumerate(points)]


def test_matched_block_uses_the_targets_best_and_the_first_time_each_reaches_it():
    target = curve([(10, 100, 1.0), (20, 200, 3.0), (30, 300, 2.5), (40, 400, 3.0)])
    ric = curve([(1, 5, 2.0), (2, 10, 2.9), (3, 15, 3.2), (4, 20, 3.5)])
    block = matched("morlhf", target, ric)
    assert block["target_method"] == "morlhf"
    assert block["target_hv"] == 3.0
    assert (block["target_seconds"], block["target_flops"]) == (20, 200)  # first time at 3.0, not the later 40
    assert (block["ric_seconds_to_match"], block["ric_flops_to_match"]) == (3, 15)
    assert block["time_ratio"] == pytest.approx(3 / 20)
    assert block["flops_ratio"] == pytest.approx(15 / 200)


def test_matched_block_says_when_ric_never_reaches_the_target():
    block = matched("soups", curve([(5, 50, 4.0)]), curve([(1, 1, 3.0), (2, 2, 3.9)]))
    assert block["ric_seconds_to_match"] is None and block["time_ratio"] is None
    assert block["ric_hv_best"] == 3.9
    # the reverse match: when the target first reached RiC's best (3.9), against when RiC did
    assert (block["ric_seconds_to_best"], block["target_seconds_to_ric_best"]) == (2, 5)
    with pytest.raises(ValueError):
        matched("soups", [], curve([(1, 1, 3.0)]))


def test_plateau_means_the_last_snapshot_adds_little():
    assert plateaued(curve([(0, 0, 9.0), (1, 1, 12.0), (2, 2, 12.02)]))["plateaued"]
    assert plateaued(curve([(0, 0, 9.0), (1, 1, 12.0), (2, 2, 11.5)]))["last_gain"] == pytest.approx(-0.5)
    assert not plateaued(curve([(0, 0, 9.0), (1, 1, 11.0), (2, 2, 12.0)]))["plateaued"]


def test_paper_projection_is_labelled_and_scales_with_the_ppo_budget():
    small, large = paper_projection({"ppo_episodes_per_point": 10000}), paper_projection()
    assert "projection" in large["label"]
    assert large["ric_flops"] == small["ric_flops"]
    assert large["morlhf_flops"] == pytest.approx(2 * small["morlhf_flops"])
    assert large["ratio_ric_over_morlhf"] == pytest.approx(small["ratio_ric_over_morlhf"] / 2)
    stages = large["ric_flops_by_stage"]
    assert sum(stages.values()) == pytest.approx(large["ric_flops"])


def test_stopwatch_leaves_out_paused_time_and_names_runs_and_stages():
    clock = Stopwatch()
    with clock.paused():
        time.sleep(0.05)
    assert clock.excluded >= 0.05 and clock.elapsed() < 0.05
    assert default_run_key("out/runs/w_0.100_0.900/checkpoints") == "runs/w_0.100_0.900"
    assert default_run_key("out/offline") == ""
    assert (default_stage("m/online_2/sft"), default_stage("m/offline"), default_stage("m/runs/a/checkpoints")) == (
        "online_2",
        "offline",
        "rl",
    )


def test_snapshots_along_soups_runs_load_as_fronts_and_end_on_the_final_weights(tmp_path, capsys):
    from pluralign.methods.soups.config import SoupsConfig
    from pluralign.methods.soups.trainer import train_soups
    from pluralign.models.loading import load_causal_lm
    from pluralign.objectives import ObjectiveSet
    from pluralign.worlds.reviews.corpus import generate_corpus
    from pluralign.worlds.reviews.tiny_lm import build_tiny_gpt, tokenizer_texts, train_tokenizer

    corpus = generate_corpus(10, 2, seed=7)
    start = tmp_path / "start"
    build_tiny_gpt(start, train_tokenizer(tokenizer_texts(corpus), start, vocab_size=300), n_layer=1, n_embd=32)
    objectives = ObjectiveSet.from_specs(["sentiment", "conciseness"])
    objectives.fit_stats(objectives.score([s["prompt"] for s in corpus], [s["response"] for s in corpus]))
    config = SoupsConfig(
        output_dir=str(tmp_path / "model"), model_name_or_path=str(start), max_steps=2,
        per_device_train_batch_size=4, num_generations=2, max_completion_length=8, save_strategy="no",
        report_to=[], learning_rate=1e-2, disable_tqdm=True, logging_steps=1,
    )  # fmt: skip
    clock = Stopwatch()
    callback = SnapshotCallback(tmp_path / "snaps", clock, every_steps=1)
    out = train_soups(config, objectives, sorted({s["prompt"] for s in corpus}), lambda _m: None, [callback])
    printed = capsys.readouterr().out
    assert "rloo sentiment: step 1/2: loss" in printed and "rloo conciseness: trained 2 steps" in printed
    assert "{'" not in printed  # pluralign's progress lines, not transformers' raw log dicts

    assert [(s.tag, s.run) for s in callback.snapshots] == [
        ("step_1", "runs/sentiment"), ("step_2", "runs/sentiment"),
        ("step_1", "runs/conciseness"), ("step_2", "runs/conciseness"),
    ]  # fmt: skip
    assert clock.excluded > 0  # saving the snapshots is off the clock
    assert all(s.tokens > 0 and s.seconds > 0 for s in callback.snapshots)
    totals = tag_totals(callback.snapshots)
    assert [t["tag"] for t in totals] == ["step_1", "step_2"]
    by_run = {(s.tag, s.run): s for s in callback.snapshots}
    assert totals[1]["seconds"] == pytest.approx(
        by_run["step_2", "runs/sentiment"].seconds + by_run["step_2", "runs/conciseness"].seconds
    )
    # a run's clock starts where the previous run ended: the second run's seconds are its own only
    # (measured from the start instead, the two runs' seconds would add up to more than the whole clock)
    assert totals[1]["seconds"] <= clock.elapsed()
    assert json.loads((tmp_path / "snaps" / "snapshots.json").read_text())[0]["tag"] == "step_1"

    snapshot = materialise(tmp_path / "snaps" / "step_2", out)
    policy = load_policy(snapshot)
    assert policy.method == "soups"
    front = evaluate_front(policy, ["The food was", "I think"], objectives, [[1.0, 0.0], [0.0, 1.0]],
                           max_new_tokens=4, do_sample=False)  # fmt: skip
    assert [p["preference"] for p in front.points] == [[1.0, 0.0], [0.0, 1.0]]
    assert all(len(p["scores"]) == 2 for p in front.points)
    final = load_causal_lm(str(out / "runs" / "sentiment")).state_dict()
    last = load_causal_lm(str(snapshot / "runs" / "sentiment")).state_dict()
    assert all(torch.equal(final[k], last[k]) for k in final)
    first = load_causal_lm(str(tmp_path / "snaps" / "step_1" / "runs" / "sentiment")).state_dict()
    assert any(not torch.equal(final[k], first[k]) for k in final)


def _front_cost_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "front_cost.py"
    spec = importlib.util.spec_from_file_location("front_cost_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_front_cost_trains_each_world_through_its_own_hooks():
    from types import SimpleNamespace

    from pluralign.worlds.chat.demo import soups_config, train_ric_chat, train_soups_chat
    from pluralign.worlds.chat.world import ChatSettings
    from pluralign.worlds.reviews.ric import train_on_demo

    fc = _front_cost_script()
    assert fc.training_hook("chat", "ric") is train_ric_chat
    assert fc.training_hook("chat", "soups") is train_soups_chat
    assert fc.training_hook("chat", "morlhf") is None  # not offered on the chat world
    assert fc.training_hook("reviews", "ric") is train_on_demo
    assert fc.available("chat", ["ric", "morlhf", "soups"]) == (["ric", "soups"], ["morlhf"])

    settings = ChatSettings(rl_steps=7, max_new_tokens=24)
    world = SimpleNamespace(
        base_model="builtin:smollm2-135m-instruct", settings=settings, generation_kwargs={"max_new_tokens": 24}
    )
    config = soups_config(world, "unused_dir", learning_rate=1e-5)
    assert config.use_peft and config.max_steps == 7 and config.learning_rate == 1e-5
    assert config.max_completion_length == 24
    assert set(config.peft_config().target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_progress_lines_tell_step_logs_from_the_final_summary():
    from pluralign.training.progress import format_log

    # with token counting, transformers adds train_runtime to every step's log: still a step line
    step = format_log({"loss": 1.23456, "learning_rate": 5e-4, "train_runtime": 72.0}, 10, 96, "sft offline: ")
    assert step == "sft offline: step 10/96: loss 1.235, lr 5.0e-04"
    end = format_log({"train_loss": 1.5, "train_runtime": 700.2}, 96, 96, "sft offline: ")
    assert end == "sft offline: trained 96 steps in 700s, mean loss 1.5"


def test_the_relevance_scorer_counts_its_encoder_once_loaded():
    from pluralign.objectives import ObjectiveSet

    objectives = ObjectiveSet.from_specs(["relevance", "sentiment"])
    objectives.score(["How do I bake bread?"], ["Mix flour, water and yeast, then bake."])
    n = reward_model_parameters(objectives[name] for name in objectives.names)
    assert 20e6 < n < 25e6  # all-MiniLM-L6-v2 (22.7M); VADER is a rule set


def staged_curve(stages):
    """A RiC-like curve: the SFT start, then (stage, seconds, hypervolume) points, several per stage allowed."""
    return [CurvePoint("sft", 0.0, 0.0, 9.0, {"stage": "start"})] + [
        CurvePoint(f"{stage}_{i}", s, 10.0 * s, hv, {"stage": stage}) for i, (stage, s, hv) in enumerate(stages)
    ]


def test_where_rics_front_stops_per_online_iteration_against_the_rl_fronts():
    curve = staged_curve(
        [("offline", 10, 12.0), ("offline", 20, 14.0), ("online_1", 30, 15.0), ("online_2", 40, 15.95),
         ("online_3", 50, 16.0), ("online_4", 60, 15.8)]
    )  # fmt: skip
    stop = where_it_stops(curve, {"morlhf": 16.3, "soups": 14.6})
    # one row per stage, at the stage's last snapshot (offline: 20 s, not the mid-stage 10 s)
    assert [(r["stage"], r["seconds"], r["hypervolume"]) for r in stop["stages"]] == [
        ("offline", 20, 14.0), ("online_1", 30, 15.0), ("online_2", 40, 15.95), ("online_3", 50, 16.0),
        ("online_4", 60, 15.8),
    ]  # fmt: skip
    assert [round(r["gain"], 2) for r in stop["stages"]] == [5.0, 1.0, 0.95, 0.05, -0.2]
    # best 16.0 after online_3; online_2 is within 2% of the 7.0 total gain (0.14), so the front stops there
    assert (stop["best_hv"], stop["stops_at"], stop["stop_seconds"]) == (16.0, "online_2", 40)
    assert not stop["still_rising"]
    assert stop["targets"]["morlhf"]["reached"] is False
    assert stop["targets"]["morlhf"]["gap_at_best"] == pytest.approx(0.3)
    assert stop["targets"]["soups"]["reached"] is True
    rising = where_it_stops(staged_curve([("offline", 10, 12.0), ("online_1", 20, 13.0)]))
    assert rising["still_rising"] and rising["stops_at"] == "online_1"
    with pytest.raises(ValueError):
        where_it_stops([CurvePoint("sft", 0.0, 0.0, 9.0, {"stage": "start"})])


def test_front_cost_trains_ric_on_the_reviews_world_as_the_demo_does(tmp_path):
    """The benchmark's RiC is the demo's RiC: same epochs, iterations, buffer and generation settings.

    It once ran other settings (one offline epoch, four online iterations) whose front stopped below the
    demo's (docs/front_cost.md). Only what it counts (tokens) and what it is asked to change may differ.
    """
    from types import SimpleNamespace

    from pluralign.worlds.reviews.ric import demo_config
    from pluralign.worlds.reviews.world import GENERATION, OBJECTIVES, WorldSettings

    fc = _front_cost_script()
    world = SimpleNamespace(
        train=[{"prompt": "Review:", "response": "Great."}], base_model=str(tmp_path / "sft"),
        objectives=SimpleNamespace(specs=lambda: list(OBJECTIVES)), generation_kwargs=dict(GENERATION),
        settings=WorldSettings(),
    )  # fmt: skip
    args = SimpleNamespace(world="reviews", ric_epochs=None, ric_online_iterations=None, ric_set=[])
    demo = demo_config(world, tmp_path / "demo").to_dict()
    bench = demo_config(world, tmp_path / "bench", **fc.overrides_for("ric", args)).to_dict()
    paths = {"output_dir", "logging_dir", "dataset"}  # each run writes its own copy of the data
    differ = {k for k in demo if demo[k] != bench[k]} - paths
    assert differ == {"include_num_input_tokens_seen"}
    args.ric_online_iterations = 6  # the flag for more online iterations changes that alone
    more = demo_config(world, tmp_path / "more", **fc.overrides_for("ric", args)).to_dict()
    assert {k for k in demo if demo[k] != more[k]} - paths == {
        "include_num_input_tokens_seen", "online_iterations"
    }  # fmt: skip
    assert more["online_iterations"] == 6
