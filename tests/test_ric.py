"""RiC end to end on a small world: the CLI trains, a kill in the online stage resumes without rescoring,
and the trained model moves each objective in the direction of the preference."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pluralign import load_policy
from pluralign.preferences.weights import preference_grid

pytestmark = pytest.mark.slow


def ric_args(world, data: Path, out: Path) -> list[str]:
    return [
        "--model_name_or_path", world.base_model,
        "--dataset", str(data),
        "--objective", "sentiment",
        "--objective", "conciseness=tests.scorers:logged_conciseness",
        "--output_dir", str(out),
        "--num_train_epochs", "8",
        "--learning_rate", "3e-3",
        "--lr_scheduler_type", "cosine",
        "--per_device_train_batch_size", "32",
        "--max_length", "160",
        "--online_iterations", "1",
        "--online_prompts", "96",
        "--online_offline_samples", "400",
        "--online_learning_rate", "5e-4",
        "--online_max_new_tokens", "40",
        "--generation_batch_size", "8",
        "--save_steps", "40",
        "--logging_steps", "1000",
        "--disable_tqdm", "true",
        "--report_to", "none", "--gradient_checkpointing", "false",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def ric_run(tiny_world, tmp_path_factory):
    """Train through the CLI, kill it during online generation, rerun it to the end."""
    root = tmp_path_factory.mktemp("ric")
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": s["prompt"], "response": s["response"]}) + "\n" for s in tiny_world.train))
    out = root / "run"
    env = {**os.environ, "SCORER_LOG": str(root / "scored.log"), "OMP_NUM_THREADS": "2"}
    cmd = [sys.executable, "-m", "pluralign.cli", "train", "ric", *ric_args(tiny_world, data, out)]
    gen_file = out / "online_1" / "generations.rank0.jsonl"
    proc = subprocess.Popen(cmd, env=env, cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 1200  # the kill comes when online generation starts; this only bounds a loaded machine
    while time.time() < deadline and proc.poll() is None:
        if gen_file.is_file() and gen_file.read_text().count("\n") >= 1:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    killed = json.loads((out / "ric_state.json").read_text())["done"]
    lines_at_kill = gen_file.read_text().count("\n")
    log_at_kill = (root / "scored.log").read_text().splitlines()
    done = subprocess.run(cmd, env=env, cwd=Path(__file__).parent.parent, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return {"out": out, "killed_state": killed, "lines_at_kill": lines_at_kill, "log_at_kill": log_at_kill,
            "log": (root / "scored.log").read_text().splitlines(), "stdout": done.stdout}  # fmt: skip


def test_kill_during_online_stage_resumes_without_rescoring(ric_run):
    out = ric_run["out"]
    assert ric_run["killed_state"] == ["score", "offline"]  # killed inside online iteration 1
    assert 0 < ric_run["lines_at_kill"] < 96
    assert "offline SFT done" not in ric_run["stdout"]  # the offline stage was not redone
    plan = (out / "online_1" / "plan.jsonl").read_text().splitlines()
    gens = [json.loads(x) for x in (out / "online_1" / "generations.rank0.jsonl").read_text().splitlines()]
    assert sorted(g["i"] for g in gens) == list(range(len(plan)))  # each planned generation exactly once
    # every distinct (prompt, response) pair is scored exactly once, across the kill and the rerun
    log = ric_run["log"]
    assert len(log) == len(set(log)) and log[: len(ric_run["log_at_kill"])] == ric_run["log_at_kill"]
    assert len(ric_run["log_at_kill"]) >= 700 and len(log) > len(ric_run["log_at_kill"])
    assert json.loads((out / "ric_state.json").read_text())["done"][-1] == "export"
    manifest = json.loads((out / "pluralign.json").read_text())
    assert manifest["method"] == "ric" and manifest["objectives"] == ["sentiment", "conciseness"]
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))


def test_mors_buffer_follows_the_filter(ric_run):
    out = ric_run["out"]
    accepted = [json.loads(x) for x in (out / "online_1" / "accepted.jsonl").read_text().splitlines()]
    z = np.array([a["z"] for a in accepted])
    assert 0 < len(accepted) < len((out / "online_1" / "plan.jsonl").read_text().splitlines())
    # hindsight relabelling: the tags are the rewards the generation actually obtained
    lengths = np.array([-len(a["response"].split()) for a in accepted])
    stats = json.loads((out / "objectives.json").read_text())["stats"]["conciseness"]
    np.testing.assert_allclose(z[:, 1], (lengths - stats["mean"]) / stats["std"], atol=1e-6)


def test_steering_moves_each_objective_towards_its_weight(ric_run, tiny_world, steered_means):
    policy = load_policy(ric_run["out"])
    means = steered_means(policy, tiny_world)
    pro_sentiment, pro_concise = means[(1.0, 0.0)], means[(0.0, 1.0)]
    assert pro_sentiment[0] > pro_concise[0] + 0.2
    assert pro_concise[1] > pro_sentiment[1] + 3  # at least 3 words shorter on average
    assert len(preference_grid(2)) == 11


def test_evaluate_command_writes_the_front_files(ric_run, tiny_world, tmp_path):
    from pluralign.cli import main

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in tiny_world.eval_prompts))
    out = tmp_path / "eval"
    args = ["evaluate", "--model", str(ric_run["out"]), "--dataset", str(prompts), "--out", str(out)]
    args += ["--objective", "sentiment", "--objective", "conciseness"]
    assert main([*args, "--num_prompts", "8", "--max_new_tokens", "24"]) == 0
    front = json.loads((out / "front.json").read_text())
    assert front["objectives"] == ["sentiment", "conciseness"] and len(front["reference_point"]) == 2
    methods = [f["method"] for f in front["fronts"]]
    assert methods == ["sft", "ric"]
    ric = front["fronts"][1]
    assert len(ric["points"]) == 11 and all(len(p["scores"]) == 2 for p in ric["points"])
    assert ric["hypervolume"] >= 0 and ric["wall_seconds"] > 0
    assert (out / "pareto.png").stat().st_size > 1000 and "<img" in (out / "report.html").read_text()
    assert main([*args, "--prompt_column", "question"]) == 2  # a missing prompt column is a user error


def test_tag_guidance_amplifies_the_steering_and_steers_away_from_the_mirrored_tags(ric_run, tiny_world, steered_means):
    """Classifier-free guidance on the tags: the negative prompt for w = (1, 0) carries the tags of (0, 1)
    (each desired reward reflected within its bounds), and the guided gap between the two ends of the
    grid is wider than the plain one on both objectives."""
    from pluralign.models.manifest import Manifest

    assert Manifest.load(ric_run["out"]).extra["guidance_scale"] == 1.0  # the trainer's default, stored
    plain, guided = load_policy(ric_run["out"]), load_policy(ric_run["out"], guidance_scale=3.0)
    assert plain.guidance_scale == 1.0 and guided.guidance_scale == 3.0
    prompt = tiny_world.eval_prompts[0]
    assert guided.negative_prompt(prompt, (1.0, 0.0)) == guided.tagged_prompt(prompt, (0.0, 1.0))
    assert guided.negative_prompt(prompt, (1.0, 0.0)) != guided.tagged_prompt(prompt, (1.0, 0.0))

    def gaps(means):
        return means[(1.0, 0.0)][0] - means[(0.0, 1.0)][0], means[(0.0, 1.0)][1] - means[(1.0, 0.0)][1]

    plain_gaps, guided_gaps = gaps(steered_means(plain, tiny_world)), gaps(steered_means(guided, tiny_world))
    assert guided_gaps[0] > plain_gaps[0] and guided_gaps[1] > plain_gaps[1], (plain_gaps, guided_gaps)


def test_guided_decoding_bans_the_tag_names_and_plain_decoding_is_untouched(ric_run, tiny_world, monkeypatch):
    """A guided RiC model's typical slip is copying its tag line ("5 <helpful> 2"): guided generation
    passes every tag's name text, alone and after a space, to transformers as ``bad_words_ids``."""
    from pluralign.methods.ric import policy as ric_policy

    seen = []
    monkeypatch.setattr(ric_policy, "generate_batched", lambda *a, **kw: seen.append(kw) or [""] * len(a[2]))
    guided = load_policy(ric_run["out"], guidance_scale=3.0)
    names = guided.template.name_texts(guided.objectives)
    assert names == [guided.template.tag_format.split("{value")[0].format(name=n).strip() for n in guided.objectives]
    prompt = tiny_world.eval_prompts[0]
    guided.generate_many([prompt], [(1.0, 0.0)])
    decoded = {guided.tokenizer.decode(ids).strip() for ids in seen[-1]["bad_words_ids"]}
    assert decoded == set(names)
    load_policy(ric_run["out"]).generate_many([prompt], [(1.0, 0.0)])
    assert "bad_words_ids" not in seen[-1]
