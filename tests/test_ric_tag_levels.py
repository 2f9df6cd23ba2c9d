"""RiC with quantile-level tags at the start of the response: the trained model's manifest carries the
levels, and steering writes them where training put them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pluralign import load_policy
from pluralign.errors import ConfigError
from pluralign.methods.ric.config import RiCConfig
from pluralign.methods.ric.trainer import train_ric

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _scorer_log(tmp_path, monkeypatch):
    monkeypatch.setenv("SCORER_LOG", str(tmp_path / "scored.log"))  # tests.scorers logs what it scores


def _config(world, tmp_path, **overrides) -> RiCConfig:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": s["prompt"], "response": s["response"]}) + "\n" for s in world.train))
    settings = dict(
        output_dir=str(tmp_path / "run"), model_name_or_path=world.base_model, dataset=str(data),
        objective=["sentiment", "conciseness=tests.scorers:logged_conciseness"], response_marker=None,
        tag_format="<{name}> {value}", tag_levels=5, tag_position="response_start", max_steps=2,
        per_device_train_batch_size=8, max_length=160, online_iterations=0, report_to="none",
        disable_tqdm=True, save_steps=100, activation_checkpointing=False,
    )  # fmt: skip
    return RiCConfig(**{**settings, **overrides})


def test_level_tags_are_stored_and_used_where_training_put_them(tiny_world, tmp_path):
    out = train_ric(_config(tiny_world, tmp_path), progress=None)
    manifest = json.loads((out / "pluralign.json").read_text())
    template = manifest["template"]
    assert template["position"] == "response_start"
    edges = template["level_edges"]
    assert set(edges) == {"sentiment", "conciseness"}
    assert all(len(e) == 4 and np.all(np.diff(e) >= 0) for e in edges.values())
    policy = load_policy(out)
    prompt = tiny_world.eval_prompts[0]
    assert policy.tagged_prompt(prompt, [1.0, 0.0]) == f"{prompt} <sentiment> 4 <conciseness> 0\n"
    assert policy.tagged_prompt(prompt, [0.0, 1.0]) == f"{prompt} <sentiment> 0 <conciseness> 4\n"


def test_level_tags_at_the_response_start_steer_each_objective_towards_its_weight(tiny_world, tmp_path, steered_means):
    out = train_ric(
        _config(tiny_world, tmp_path, max_steps=-1, num_train_epochs=6, learning_rate=3e-3, lr_scheduler_type="cosine",
                per_device_train_batch_size=32),
        progress=None,
    )  # fmt: skip
    policy = load_policy(out)
    means = steered_means(policy, tiny_world)
    pro_sentiment, pro_concise = means[(1.0, 0.0)], means[(0.0, 1.0)]
    assert pro_sentiment[0] > pro_concise[0] + 0.2
    assert pro_concise[1] > pro_sentiment[1] + 3  # at least 3 words shorter on average


@pytest.mark.parametrize(("field", "value"), [("tag_levels", 1), ("tag_position", "middle")])
def test_bad_tag_settings_are_one_line_errors(tiny_world, tmp_path, field, value):
    with pytest.raises(ConfigError, match=field):
        train_ric(_config(tiny_world, tmp_path, **{field: value}), progress=None)
