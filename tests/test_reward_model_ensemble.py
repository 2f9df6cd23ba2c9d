"""Held-out accuracy with its confidence interval, agreement between reward models in `pluralign accuracy`,
and an ensemble of reward models (mean of z-scores fitted on the training pairs) used as one objective."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import pluralign.objectives.trained as trained
from pluralign.cli import main
from pluralign.errors import ConfigError
from pluralign.models.manifest import Manifest
from pluralign.objectives.trained import accuracy_of_margins, agreement, wilson_interval


def test_wilson_interval_matches_known_values():
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and 0.15 < hi < 0.17
    assert wilson_interval(140, 200)[1] - wilson_interval(140, 200)[0] > wilson_interval(700, 1000)[1] - wilson_interval(700, 1000)[0]
    result = accuracy_of_margins(np.array([1.0, 2.0, -1.0, 0.0]))
    assert result["pairwise_accuracy"] == 0.5 and result["ties"] == 1 and result["pairs"] == 4
    assert result["ci95"][0] < 0.5 < result["ci95"][1]


def test_agreement_of_margins():
    a = np.array([1.0, -2.0, 3.0, 0.0])
    assert agreement(a, a * 5) == {"agreement": 1.0, "margin_correlation": 1.0}
    assert agreement(a, -a)["agreement"] == 0.25  # only the tie agrees with itself
    assert agreement(a, -a)["margin_correlation"] == -1.0


def test_accuracy_command_reports_interval_and_agreement(tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"q{i}", "chosen": "a b c d" if i % 4 else "a", "rejected": "a b" if i % 4 else "a b c"}
            for i in range(40)]  # fmt: skip
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = tmp_path / "acc.json"
    args = ["accuracy", "--dataset", str(pairs), "--objective", "words=tests.scorers:word_count",
            "--objective", "verbosity", "--objective", "conciseness", "--out", str(report)]  # fmt: skip
    assert main(args) == 0
    data = json.loads(report.read_text())
    words = next(r for r in data["results"] if r["name"] == "words")
    assert words["pairwise_accuracy"] == 0.75 and words["ci95"][0] < 0.75 < words["ci95"][1]
    pairs_of = {(a["a"], a["b"]): a for a in data["agreement"]}
    assert len(pairs_of) == 3
    assert pairs_of[("verbosity", "conciseness")]["agreement"] == 0.0  # one prefers the longer, one the shorter
    assert pairs_of[("verbosity", "conciseness")]["margin_correlation"] < -0.99
    out = capsys.readouterr().out
    assert "95% interval" in out and "agreement" in out


# ---- the ensemble: two members, each right on one half of the pairs and noise on the other, at scales
# 1000x apart; z-scoring makes them count alike, so the ensemble is right where either is.


def _noise(text: str) -> float:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) / 16**8 - 0.5


class _Member:
    def __init__(self, word_good: str, word_bad: str, scale: float, offset: float) -> None:
        self.good, self.bad, self.scale, self.offset = word_good, word_bad, scale, offset

    def score(self, prompts, responses, context=None):
        out = []
        for p, r in zip(prompts, responses):
            signal = 1.0 if self.good in r else (-1.0 if self.bad in r else 0.0)
            out.append(self.offset + self.scale * (signal + 0.6 * _noise(self.good + p + r)))
        return out


def _pairs(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        if i % 2:
            rows.append({"prompt": f"q{i}", "chosen": f"polite answer {i}", "rejected": f"rude answer {i}"})
        else:
            rows.append({"prompt": f"q{i}", "chosen": f"safe answer {i}", "rejected": f"risky answer {i}"})
    return rows


@pytest.fixture
def members(tmp_path, monkeypatch):
    dirs = {}
    fakes = {}
    for name, member in (("a", _Member("polite", "rude", 1.0, 0.0)), ("b", _Member("safe", "risky", 1000.0, 5000.0))):
        d = (tmp_path / name).resolve()
        Manifest(method="btl", objectives=["preference"]).save(d)
        dirs[name], fakes[str(d)] = d, member
    real = trained.load_reward_model

    def load(path, **kwargs):
        key = str(__import__("pathlib").Path(path).resolve())
        return fakes[key] if key in fakes else real(path, **kwargs)

    monkeypatch.setattr(trained, "load_reward_model", load)
    import pluralign.reward_models.ensemble.trainer as ens_trainer

    monkeypatch.setattr(ens_trainer, "load_reward_model", load)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _pairs(200)))
    return {"dirs": dirs, "fakes": fakes, "data": data, "root": tmp_path}


def test_ensemble_z_scores_members_on_training_pairs_and_beats_each(members):
    from pluralign.data.pairs import split_pairs
    from pluralign.objectives.set import build_objective, parse_objective_spec

    out = members["root"] / "ens"
    args = ["train", "reward-model", "--type", "ensemble", "--members", str(members["dirs"]["a"]),
            "--members", str(members["dirs"]["b"]), "--dataset", str(members["data"]), "--output_dir", str(out),
            "--eval_fraction", "0.25", "--seed", "3"]  # fmt: skip
    assert main(args) == 0
    manifest = Manifest.load(out)
    assert manifest.method == "ensemble"
    train, held = split_pairs(_pairs(200), 0.25, 3)
    b = members["fakes"][str(members["dirs"]["b"])]
    raw = np.array(b.score([p["prompt"] for p in train] * 2, [p["chosen"] for p in train] + [p["rejected"] for p in train]))
    stats = manifest.extra["members"][1]
    assert stats["mean"] == pytest.approx(raw.mean()) and stats["std"] == pytest.approx(raw.std())  # training split only

    objective = build_objective(f"harmless={out}")  # the ensemble is one objective
    assert parse_objective_spec(f"harmless={out}")["type"] == "reward_model"
    prompts, responses = ["q1", "q2"], ["polite answer", "risky answer"]
    a = members["fakes"][str(members["dirs"]["a"])]
    expected = [
        ((sa - manifest.extra["members"][0]["mean"]) / manifest.extra["members"][0]["std"]
         + (sb - stats["mean"]) / stats["std"]) / 2
        for sa, sb in zip(a.score(prompts, responses), b.score(prompts, responses))
    ]  # fmt: skip
    assert objective.score(prompts, responses) == pytest.approx(expected)

    held_acc = json.loads((out / "eval_results.json").read_text())
    member_acc = [trained.pairwise_accuracy(members["fakes"][str(d)].score, held)["pairwise_accuracy"]
                  for d in members["dirs"].values()]  # fmt: skip
    assert held_acc["pairs"] == 50 and held_acc["pairwise_accuracy"] >= max(member_acc)
    assert held_acc["pairwise_accuracy"] >= 0.95 and max(member_acc) < 0.9
    raw_mean = trained.pairwise_accuracy(
        lambda p, r: list(np.add(a.score(p, r), b.score(p, r)) / 2), held)["pairwise_accuracy"]  # fmt: skip
    assert raw_mean < held_acc["pairwise_accuracy"]  # without z-scores the 1000x member drowns the other


def test_ensemble_refuses_bad_members(members, tmp_path):
    from pluralign.reward_models.ensemble.config import EnsembleConfig
    from pluralign.reward_models.ensemble.trainer import train_ensemble

    with pytest.raises(ConfigError, match="at least 2"):
        EnsembleConfig(members=[str(members["dirs"]["a"])], output_dir=str(tmp_path / "e"))
    with pytest.raises(ConfigError, match="not a reward model"):
        train_ensemble(EnsembleConfig(members=[str(members["dirs"]["a"]), str(tmp_path)], output_dir=str(tmp_path / "e"),
                                      dataset=str(members["data"])), progress=lambda s: None)  # fmt: skip
    with pytest.raises(ConfigError, match="twice"):
        train_ensemble(EnsembleConfig(members=[str(members["dirs"]["a"])] * 2, output_dir=str(tmp_path / "e"),
                                      dataset=str(members["data"])), progress=lambda s: None)  # fmt: skip


def test_benchmark_summary_over_seeds():
    from reward_models import summarise, table  # benchmarks/reward_models.py

    runs = [{"row": "btl", "seed": s, "accuracy": a, "wall_seconds": w, "held_out_pairs": 199, "train_pairs": 798}
            for s, a, w in [(0, 0.60, 90.0), (1, 0.64, 10.0), (2, 0.62, 12.0)]]  # fmt: skip
    (row,) = summarise(runs)
    assert (row["accuracy_mean"], row["accuracy_min"], row["accuracy_max"]) == (0.62, 0.60, 0.64)
    assert row["cold_seconds"] == 90.0 and row["wall_mean"] == round((90 + 10 + 12) / 3, 1) and row["seeds"] == 3
    assert "btl" in table([row]) and "0.620" in table([row])
