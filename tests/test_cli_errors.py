"""User mistakes end in one line on stderr that names the problem, and exit status 2."""

from __future__ import annotations

import json

import pytest

from pluralign.cli import main
from pluralign.models.manifest import Manifest
from pluralign.objectives import ObjectiveSet
from pluralign.preferences.tags import TagTemplate


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny random GPT-2 in RiC's model-dir format (no training needed to check argument errors)."""
    from pluralign.worlds.reviews.tiny_lm import build_tiny_gpt, train_tokenizer

    d = tmp_path_factory.mktemp("ric_model")
    tok = train_tokenizer(["the lamp is good and bad ."] * 20 + ["<sentiment> 0.5 <conciseness> -1.0"] * 5, d, vocab_size=280)
    build_tiny_gpt(d, tok, n_layer=1, n_embd=16, n_positions=64)
    obj = ObjectiveSet.from_specs(["sentiment", "conciseness"])
    obj.fit_stats({"sentiment": [-0.5, 0.0, 0.9], "conciseness": [-20.0, -8.0, -3.0]})
    Manifest(method="ric", objectives=obj.names, stats=obj.stats_dict(), objective_specs=obj.specs(), template=TagTemplate().to_dict()).save(d)
    return d


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    "pref,expected",
    [
        ("sentiment=-0.2,conciseness=1.2", "preference weight 0 is negative"),
        ("sentiment=nan,conciseness=1", "preference weight 0 is NaN"),
        ("sentiment=1.0", "no weight for objective 'conciseness'"),
        ("sentiment=0.5,funny=0.5", "unknown objective 'funny'"),
    ],
)
def test_bad_preferences(capsys, model_dir, pref, expected):
    code, err = run_cli(capsys, "generate", "--model", str(model_dir), "--preference", pref, "--max_new_tokens", "3", "hi")
    assert code == 2
    assert err.count("\n") == 0 and expected in err and err.startswith("pluralign: error:")


def test_generate_works_with_a_good_preference(capsys, model_dir):
    code = main(["generate", "--model", str(model_dir), "--preference", "sentiment=0.7,conciseness=0.3", "--max_new_tokens", "4", "the lamp"])
    assert code == 0 and capsys.readouterr().out.strip() != ""


def test_generate_takes_tag_guidance_for_a_ric_model_and_refuses_a_bad_one(capsys, model_dir, monkeypatch):
    from pluralign.methods.ric import policy as ric_policy

    scales = []
    real = ric_policy.generate_batched

    def spy(*args, **kwargs):
        scales.append(kwargs.get("guidance_scale"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ric_policy, "generate_batched", spy)
    args = ["generate", "--model", str(model_dir), "--preference", "sentiment=0.7,conciseness=0.3", "--max_new_tokens", "4"]
    assert main([*args, "--guidance_scale", "3", "the lamp"]) == 0 and scales == [3.0]
    capsys.readouterr()
    code, err = run_cli(capsys, *args, "--guidance_scale", "0.5", "the lamp")
    assert code == 2 and "guidance_scale must be at least 1" in err and "\n" not in err
    code, err = run_cli(capsys, *args, "--guidance_against", "random", "the lamp")
    assert code == 2 and "guidance_against 'random' is not one of opposite, neutral, raised" in err and "\n" not in err
    code, err = run_cli(capsys, *args, "--floor_at_middle", "helpful", "the lamp")
    assert code == 2 and "floor_at_middle 'helpful' is not an objective here; use one of sentiment, conciseness" in err
    assert "\n" not in err
    assert main([*args, "--floor_at_middle", "conciseness", "the lamp"]) == 0


def test_unknown_objective_name_in_score(capsys, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "p", "response": "r"}) + "\n")
    code, err = run_cli(capsys, "score", "--dataset", str(data), "--objective", "helpfulness", "--out", str(tmp_path / "o"))
    assert code == 2 and "objective 'helpfulness' is not a built-in" in err and "\n" not in err


def test_dataset_without_prompt_column(capsys, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"question": "p", "response": "r"}) + "\n")
    code, err = run_cli(capsys, "score", "--dataset", str(data), "--objective", "sentiment", "--out", str(tmp_path / "o"))
    assert code == 2 and "no prompt column 'prompt'" in err and "--prompt_column" in err


def test_reward_model_path_that_does_not_exist(capsys, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "p", "response": "r"}) + "\n")
    code, err = run_cli(capsys, "score", "--dataset", str(data), "--objective", f"helpful={tmp_path}/missing_rm", "--out", str(tmp_path / "o"))
    assert code == 2 and "missing_rm" in err and "does not exist" in err


def test_score_writes_columns_and_statistics(capsys, tmp_path):
    data = tmp_path / "d.jsonl"
    rows = [{"prompt": "p", "chosen": " great and lovely", "rejected": " awful"}, {"prompt": "q", "chosen": " fine", "rejected": " bad bad"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["score", "--dataset", str(data), "--objective", "sentiment", "--objective", "verbosity", "--out", str(tmp_path / "o")]) == 0
    scored = [json.loads(x) for x in (tmp_path / "o" / "scored.jsonl").read_text().splitlines()]
    assert len(scored) == 4 and scored[0]["score_verbosity"] == 3.0 and scored[1]["score_sentiment"] < 0
    stats = json.loads((tmp_path / "o" / "objectives.json").read_text())["stats"]
    assert stats["verbosity"]["max"] == 3.0 and stats["verbosity"]["min"] == 1.0


def test_unknown_config_key(capsys, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lerning_rate: 0.1\n")
    code, err = run_cli(capsys, "train", "ric", "--config", str(cfg))
    assert code == 2 and "unknown config key 'lerning_rate'" in err and "learning_rate" in err


def test_missing_model_dir(capsys, tmp_path):
    code, err = run_cli(capsys, "generate", "--model", str(tmp_path / "nope"), "hi")
    assert code == 2 and "does not exist" in err


def test_help_lists_commands_and_methods(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "ric" in out
