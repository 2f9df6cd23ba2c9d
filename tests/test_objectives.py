import json

import numpy as np
import pytest

from pluralign.errors import ConfigError, DataError, ModelNotFoundError
from pluralign.objectives import ObjectiveSet, ObjectiveStats, build_objective, parse_objective_spec


def test_builtin_scorers_measure_the_text():
    obj = ObjectiveSet.from_specs(["sentiment", "conciseness", "pos=builtin:verbosity", "readability"])
    s = obj.score(["q", "q"], ["This is wonderful and great!", "This is awful, terrible and bad, really bad."])
    assert s["sentiment"][0] > 0.5 > -0.5 > s["sentiment"][1]
    assert s["conciseness"] == [-5.0, -8.0]
    assert s["pos"] == [5.0, 8.0]


def test_spec_parsing():
    assert parse_objective_spec("helpful=org/rm")["type"] == "hf"
    assert parse_objective_spec("x=tests.scorers:word_count") == {
        "name": "x",
        "type": "callable",
        "function": "tests.scorers:word_count",
    }
    assert parse_objective_spec({"name": "a", "scorer": "verbosity"})["type"] == "builtin"
    with pytest.raises(ConfigError, match="not a built-in"):
        parse_objective_spec("helpfulness")
    with pytest.raises(ConfigError, match="used twice"):
        ObjectiveSet.from_specs(["sentiment", "sentiment"])


def test_callable_objective_and_length_sorted_batches():
    obj = build_objective({"name": "wc", "type": "callable", "function": "tests.scorers:word_count", "batch_size": 2})
    responses = ["a b c d", "a", "a b", "a b c"]
    assert obj.score(["p"] * 4, responses) == [4.0, 1.0, 2.0, 3.0]


def test_stats_fit_save_load(tmp_path):
    obj = ObjectiveSet.from_specs(["verbosity"])
    obj.fit_stats({"verbosity": [1.0, 2.0, 3.0, 4.0]})
    st = obj.stats["verbosity"]
    assert st.mean == 2.5 and st.min == 1.0 and st.max == 4.0
    assert st.quantiles["0.5"] == pytest.approx(2.5)
    np.testing.assert_allclose(st.z([2.5, 2.5 + st.std]), [0.0, 1.0])
    obj.save(tmp_path / "o.json")
    loaded = ObjectiveSet.load(tmp_path / "o.json")
    assert loaded.names == ["verbosity"] and loaded.stats["verbosity"] == st
    assert json.loads((tmp_path / "o.json").read_text())["objectives"][0]["scorer"] == "verbosity"


def test_nan_scores_are_refused_with_the_objective_named():
    obj = ObjectiveSet.from_specs(["bad=tests.scorers:nan_scorer"])
    with pytest.raises(DataError, match="objective 'bad' returned a NaN"):
        obj.score(["p"], ["r"])
    with pytest.raises(DataError, match="NaN"):
        ObjectiveStats.fit([1.0, float("nan")], "x")


def test_missing_reward_model_path_is_one_line_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        ObjectiveSet.from_specs([f"helpful={tmp_path}/no_such_rm"])


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    d = tmp_path_factory.mktemp("rm")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "hello", "world", "q"]
    (d / "vocab.txt").write_text("\n".join(vocab))
    tok = BertTokenizerFast(vocab_file=str(d / "vocab.txt"))
    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=len(vocab),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            num_labels=2,
        )
    )
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.mark.parametrize("fmt", ["pair", "response", "concat", "template"])
def test_hf_reward_model_input_formats(tiny_rm, fmt):
    spec = {"name": "rm", "type": "hf", "model": str(tiny_rm), "input_format": fmt, "logit_index": 1, "batch_size": 2}
    if fmt == "template":
        spec["template"] = "{response} {bos} {prompt}"
    obj = build_objective(spec)
    a = obj.score(["hello", "q", "hello"], ["good world", "bad", "good world"])
    assert len(a) == 3 and all(np.isfinite(a))
    assert a[0] == pytest.approx(a[2], abs=1e-5)  # batching/sorting does not change a pair's score
    if fmt == "response":
        assert obj.score(["q"], ["good world"])[0] == pytest.approx(a[0], abs=1e-5)


def test_hf_reward_model_bad_options(tiny_rm):
    with pytest.raises(ConfigError, match="input_format"):
        build_objective({"name": "rm", "type": "hf", "model": str(tiny_rm), "input_format": "triple"})
