"""`pluralign train ric` under `accelerate launch` with 2 CPU processes (torchrun + gloo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_two_process_training_splits_generation_and_exports(tiny_world, tmp_path):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate, "accelerate's launcher is installed with the package"
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": s["prompt"], "response": s["response"]}) + "\n" for s in tiny_world.train[:256]))
    out = tmp_path / "run"
    cmd = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "pluralign.cli", "train", "ric",
        "--model_name_or_path", tiny_world.base_model, "--dataset", str(data),
        "--objective", "sentiment", "--objective", "conciseness", "--output_dir", str(out),
        "--num_train_epochs", "1", "--per_device_train_batch_size", "16", "--max_length", "128",
        "--online_iterations", "1", "--online_prompts", "16", "--online_offline_samples", "64",
        "--online_max_new_tokens", "16", "--generation_batch_size", "4",
        "--save_strategy", "no", "--report_to", "none", "--gradient_checkpointing", "false", "--disable_tqdm", "true",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": "29517"}
    done = subprocess.run(cmd, env=env, cwd=Path(__file__).parent.parent, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = {f.name: f.read_text().count("\n") for f in (out / "online_1").glob("generations.rank*.jsonl")}
    assert ranks == {"generations.rank0.jsonl": 8, "generations.rank1.jsonl": 8}  # generation split evenly
    assert json.loads((out / "ric_state.json").read_text())["done"][-1] == "export"
    assert (out / "model.safetensors").is_file() and (out / "pluralign.json").is_file()
