"""Evaluation as issue 13 asks (items 5, 10, 12): RiC's 13 fixed K=3 points or a points file, a per-objective
range beside Spearman steerability, and identical numbers for identical seeds. A randomly initialised
2-layer GPT-2 (built in a second) stands in for trained models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pluralign.errors import ConfigError
from pluralign.evaluation.grids import RIC_K3_POINTS, resolve_grid
from pluralign.evaluation.metrics import objective_range
from pluralign.objectives import ObjectiveSet, ObjectiveStats


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> str:
    from pluralign.worlds.reviews.tiny_lm import build_tiny_gpt, train_tokenizer

    root = tmp_path_factory.mktemp("lm")
    texts = ["the lamp is great and bright", "awful noisy fan, do not buy", "ok value for the price"] * 20
    tok = train_tokenizer(texts, root, vocab_size=300)
    return build_tiny_gpt(root, tok, n_layer=2, n_embd=32, n_positions=64)


class WeightedPolicy:
    """Samples from the tiny LM with the preference written into the prompt (a stand-in for RiC)."""

    method = "toy"

    def __init__(self, model_dir: str) -> None:
        from pluralign.models.loading import load_causal_lm, load_tokenizer

        self.model, self.tok = load_causal_lm(model_dir), load_tokenizer(model_dir)

    def generate_many(self, prompts, preferences, **kwargs):
        from pluralign.generation.batched import generate_batched

        tagged = [f"{p} {' '.join(f'{v:.1f}' for v in w.values())}" for p, w in zip(prompts, preferences)]
        return generate_batched(self.model, self.tok, tagged, batch_size=16, **kwargs)


def _objectives(k: int = 2) -> ObjectiveSet:
    specs = ["sentiment", "conciseness", "words=tests.scorers:word_count"][:k]
    return ObjectiveSet.from_specs(specs)


GEN = {"max_new_tokens": 6, "do_sample": True, "top_p": 0.95, "temperature": 1.0}
PROMPTS = ["How was the lamp?", "Review the fan:", "Your opinion of the kettle?", "Rate the chair:"]


def _numbers(front_json: Path) -> list:
    data = json.loads(front_json.read_text())
    return [(f["method"], f["points"], f["hypervolume"], f["steerability"], f["range"]) for f in data["fronts"]]


def test_same_seed_same_front_numbers_and_range_in_every_output(tiny_lm, tmp_path):
    from pluralign.evaluation.pipeline import evaluate_models, summary_table

    objectives = _objectives()
    data_stats = {
        "sentiment": ObjectiveStats.fit(np.linspace(-1, 1, 101)),  # 5-95% spread 1.8
        "conciseness": ObjectiveStats.fit(-np.arange(0, 21, dtype=float)),  # spread 18
    }
    runs = {}
    policy = WeightedPolicy(tiny_lm)
    grid = [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    for name, seed in (("a", 7), ("b", 7)):
        fronts = evaluate_models(
            {"toy": policy}, tiny_lm, PROMPTS, objectives, tmp_path / name, grid=grid, seed=seed, progress=None,
            range_stats=data_stats, **GEN,
        )  # fmt: skip
        runs[name] = _numbers(tmp_path / name / "front.json")
    assert runs["a"] == runs["b"]  # same seed, same numbers
    from pluralign.evaluation.front import evaluate_front

    other = evaluate_front(policy, PROMPTS, objectives, grid, method="toy", seed=8, **GEN)
    assert other.points != fronts[1].points  # the seed matters (sampling)
    sft, toy = fronts
    assert sft.range == [0.0, 0.0]  # an unsteerable model covers no range, whatever its Spearman
    scores = toy.scores
    np.testing.assert_allclose(toy.range[1], np.ptp(scores[:, 1]) / 18.0)
    np.testing.assert_allclose(toy.range[0], np.ptp(scores[:, 0]) / 1.8)
    table = summary_table(fronts, objectives.names)
    assert "range conciseness" in table and f"{toy.range[1]:.3f}" in table
    assert "<th>range sentiment</th>" in (tmp_path / "b" / "report.html").read_text()


def test_range_separates_a_method_that_barely_moves():
    w = np.linspace(0, 1, 11)[:, None] * np.array([1.0, -1.0]) + np.array([0.0, 1.0])
    tiny = np.stack([w[:, 0] * 0.01, w[:, 1] * 0.01], axis=1)  # perfect order, almost no movement
    wide = np.stack([w[:, 0] * 2.0, w[:, 1] * 2.0], axis=1)
    from pluralign.evaluation.metrics import steerability

    assert steerability(w, tiny) == steerability(w, wide) == [1.0, 1.0]
    assert objective_range(tiny, [2.0, 2.0]) == pytest.approx([0.005, 0.005])
    assert objective_range(wide, [2.0, 2.0]) == pytest.approx([1.0, 1.0])
    assert objective_range(wide, [None, 0.0]) == [None, None]


def test_a_front_that_differs_only_by_float_rounding_has_no_steerability():
    from pluralign.evaluation.metrics import steerability

    # the hh world's DPO front: one answer for every w, scored in differently padded batches
    w = np.array([[0.0, 1.0], [0.25, 0.75], [0.5, 0.5], [0.75, 0.25], [1.0, 0.0]])
    same = np.array([[2.081934484653175, 0.41504820151021704]] * 4 + [[2.081934484653175, 0.41504820209229365]])
    assert steerability(w, same) == [None, None]
    moved = same.copy()
    moved[:, 1] = [0.40, 0.41, 0.42, 0.43, 0.44]  # a real movement, however small, is still ranked
    assert steerability(w, moved) == [None, pytest.approx(-1.0)]


def test_ric13_points_and_points_files(tiny_lm, tmp_path):
    grid = resolve_grid("ric13", 3)
    assert len(grid) == 13 == len(RIC_K3_POINTS)
    assert all(abs(sum(w) - 1) < 1e-12 and min(w) >= 0 for w in grid)
    assert [0.2, 0.4, 0.4] in grid and [1.0, 0.0, 0.0] in grid
    assert len(resolve_grid("lattice", 3)) == 15 and len(resolve_grid(None, 2)) == 11
    (tmp_path / "p.json").write_text("[[0.5, 0.5, 0], [0.2, 0.3, 0.5]]")
    (tmp_path / "p.txt").write_text("# mine\n0.5, 0.5, 0\n0.2 0.3 0.5\n")
    assert resolve_grid(str(tmp_path / "p.json"), 3) == resolve_grid(str(tmp_path / "p.txt"), 3)
    with pytest.raises(ConfigError, match="3 objectives"):
        resolve_grid("ric13", 2)
    (tmp_path / "bad.txt").write_text("0.5, 0.6, 0\n")
    with pytest.raises(ConfigError, match="point 1"):
        resolve_grid(str(tmp_path / "bad.txt"), 3)
    with pytest.raises(ConfigError, match="neither"):
        resolve_grid(str(tmp_path / "missing.json"), 3)
    # the evaluation module runs on those points (K = 3)
    from pluralign.commands.evaluate import build_parser
    from pluralign.evaluation.front import evaluate_front

    assert build_parser().parse_args(["--model", "m", "--out", "o", "--grid", "ric13"]).grid == "ric13"
    front = evaluate_front(WeightedPolicy(tiny_lm), PROMPTS[:2], _objectives(3), grid, method="toy", **GEN)
    assert [p["preference"] for p in front.points] == grid


def test_online_generation_is_seeded_whatever_rng_state_training_left(tiny_lm, tmp_path):
    import torch

    from pluralign.methods.ric import trainer as ric_train
    from pluralign.methods.ric.config import RiCConfig
    from pluralign.models.loading import load_tokenizer
    from pluralign.preferences.tags import TagTemplate

    config = RiCConfig(
        output_dir=str(tmp_path),
        seed=3,
        online_prompts=6,
        online_max_new_tokens=6,
        generation_batch_size=4,
        report_to="none",
    )
    samples = [{"prompt": p, "response": "fine"} for p in PROMPTS * 2]
    objectives = _objectives()
    texts = []
    for run, state in (("a", 1), ("b", 2)):
        stage = tmp_path / run
        stage.mkdir()
        torch.manual_seed(state)  # whatever training left in the global generator
        rows = ric_train._online_generate(
            config, tiny_lm, load_tokenizer(tiny_lm), samples, objectives, TagTemplate(response_marker=None),
            stage, 1, lambda _m: None, np.array([-1.0, -1.0]), np.array([1.0, 1.0]),
        )  # fmt: skip
        texts.append([r["response"] for r in rows])
    assert texts[0] == texts[1] and len(texts[0]) == 6


def test_demo_world_cache_refuses_another_seed(tmp_path):
    from pluralign.worlds.reviews.world import WorldSettings, build_world

    (tmp_path / "world.json").write_text(json.dumps({"train": [], "eval_prompts": [], "seed": 0}))
    with pytest.raises(ConfigError, match="seed 0, not 1"):
        build_world(tmp_path, progress=None, settings=WorldSettings(seed=1))
