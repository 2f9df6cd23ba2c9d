"""Scale-out: every training command under ``accelerate launch --num_processes 2`` (CPU, gloo), the shipped
accelerate configs parse, and scoring / front evaluation split their work across processes."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from multiprocess_jobs import JOBS, build_assets, digests  # noqa: E402

ROOT = Path(__file__).parent.parent
CONFIGS = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))


def accelerate_launch(script_and_args: list[str], port: int, timeout: int = 400) -> subprocess.CompletedProcess:
    """``accelerate launch --multi_gpu --num_processes 2`` on CPU: torchrun starts two gloo processes."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate, "accelerate's launcher is installed with the package"
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", *script_and_args]  # fmt: skip
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT)])  # ROOT: tests.scorers for callable objectives
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": str(port), "PYTHONPATH": path}
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_accelerate_configs_parse(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    kind = {"multi_gpu": "MULTI_GPU", "fsdp2": "FSDP"}.get(path.stem, "DEEPSPEED")
    assert config.distributed_type.value == kind and config.num_machines == 1
    if kind == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == int(path.stem[4])
        offload = "offload" in path.stem
        assert (config.deepspeed_config["offload_param_device"] == "cpu") == offload
    if kind == "FSDP":
        assert config.fsdp_config["fsdp_version"] == 2
    assert {p.stem for p in CONFIGS} >= {"multi_gpu", "zero2", "zero3", "zero3_offload", "fsdp2"}


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    """All the training commands, one after the other, in ONE two-process launch (starting processes is slow)."""
    root = tmp_path_factory.mktemp("mp")
    build_assets(root)
    done = accelerate_launch([str(ROOT / "tests" / "multiprocess_jobs.py"), str(root), *JOBS], port=29561)
    return root, done


def job_records(root: Path, done: subprocess.CompletedProcess, job: str) -> dict[int, dict]:
    """Each process's record of ``job``: both finished it, without error, in one group of two."""
    log = done.stdout[-2000:] + done.stderr[-2000:]
    records = {}
    for rank in (0, 1):
        path = root / job / f"rank{rank}.json"
        assert path.is_file(), f"process {rank} did not finish {job}: {log}"
        records[rank] = json.loads(path.read_text())
    for rank, record in records.items():
        assert record["ok"], f"{job} failed on process {rank}: {record['error']}"
        assert record["world_size"] == 2 and record["state_rank"] == rank  # both joined one process group
    return records


def scored_rows(root: Path, job: str) -> list[tuple[str, str, str]]:
    """(rank, prompt, response) of every row the logged objective scored during ``job``."""
    return [tuple(line.split("\t", 2)) for line in (root / job / "scorer.log").read_text().splitlines()]


TRAINERS = [job for job, kind in JOBS.items() if kind in ("policy", "reward_model")]


@pytest.mark.slow
@pytest.mark.parametrize("job", TRAINERS)
def test_every_trainer_runs_on_two_processes_and_saves_once(two_process_runs, job):
    root, done = two_process_runs
    records = job_records(root, done, job)
    out = root / job / "model"
    assert records[0]["manifest_saves"] and records[0]["manifest_saves"][-1] == str(out)
    assert records[1]["manifest_saves"] == []  # the result is written by the main process only
    if JOBS[job] == "policy":
        from pluralign import load_policy

        policy = load_policy(out, device="cpu")
        kwargs = {"context": [("Tell me about the lamp.", "A lamp.", "The lamp is big.")]} if job == "npdpo" else {}
        texts = policy.generate(["Review the lamp."], max_new_tokens=3, do_sample=False, **kwargs)
        assert len(texts) == 1 and isinstance(texts[0], str)
    else:
        from pluralign import load_reward_model

        scores = load_reward_model(out).score(["Tell me about the lamp."], ["A lamp."])
        assert len(scores) == 1 and math.isfinite(scores[0])


def saved_digests(folder: Path) -> set[str]:
    """Digests of every tensor in every safetensors file under ``folder`` (the saved model, its parts)."""
    from safetensors.torch import load_file

    return {d for path in folder.rglob("*.safetensors") for d in digests(load_file(str(path)).values())}


@pytest.mark.slow
@pytest.mark.parametrize("job", TRAINERS)
def test_both_processes_train_the_same_weights_and_the_saved_model_holds_them(two_process_runs, job):
    """Per optimiser of the job: the same start on both processes, bit-identical weights at the end (the
    gradients were averaged), weights that moved, and exactly those weights in the saved files: the saved
    model scores as each process's trained model does."""
    root, done = two_process_runs
    records = job_records(root, done, job)
    ranks = [records[0]["trained"], records[1]["trained"]]
    assert ranks[0] and len(ranks[0]) == len(ranks[1]), f"{job}: each process steps the same optimisers"
    saved = saved_digests(root / job / "model")
    for i, (mine, other) in enumerate(zip(*ranks)):
        assert mine["start"] == other["start"], f"{job}: optimiser {i} started from different weights"
        assert mine["end"] == other["end"], f"{job}: the processes ended with different weights (optimiser {i})"
        moved = sum(a != b for a, b in zip(mine["start"], mine["end"]))
        assert moved, f"{job}: optimiser {i} stepped but none of its {len(mine['end'])} tensors changed"
        missing = [d for d in mine["end"] if d not in saved]
        assert not missing, f"{job}: {len(missing)} trained tensors of optimiser {i} are not in the saved files"


@pytest.mark.slow
def test_score_splits_rows_between_processes_and_the_main_one_writes(two_process_runs):
    root, done = two_process_runs
    job_records(root, done, "score")
    corpus = [json.loads(line) for line in (root / "corpus.jsonl").read_text().splitlines()]
    rows = scored_rows(root, "score")
    assert {r[0] for r in rows} == {"0", "1"}  # both processes scored
    assert len(rows) == len({(p, r) for _, p, r in rows}) == len({(s["prompt"], s["response"]) for s in corpus})
    scored = [json.loads(line) for line in (root / "score" / "model" / "scored.jsonl").read_text().splitlines()]
    assert len(scored) == len(corpus)  # merged on the main process, in input order
    # objectives score the stripped response (the one join rule, pluralign.models.sequences)
    assert [s["score_len"] for s in scored] == [float(len(s["response"].strip())) for s in corpus]
    from pluralign.objectives.scoring import ScoreCache

    cache = ScoreCache(root / "score" / "model" / "score_cache.sqlite")
    assert cache.count() == 2 * len(rows)  # every row once per objective, written by the main process
    cache.close()


@pytest.mark.slow
def test_front_evaluation_splits_its_grid_between_processes(two_process_runs):
    root, done = two_process_runs
    job_records(root, done, "evaluate")
    front = json.loads((root / "evaluate" / "model" / "front.json").read_text())
    assert [f["method"] for f in front["fronts"]] == ["sft", "ric"]
    assert all(len(f["points"]) == 3 for f in front["fronts"])  # K=2, --grid_points 2
    rows = scored_rows(root, "evaluate")
    by_rank = {r: sum(1 for row in rows if row[0] == r) for r in ("0", "1")}
    assert by_rank == {"0": 2 + 5, "1": 1 + 4}  # sft: 3 prompts; ric: 3 points x 3 prompts, dealt round-robin
