import json

import pytest

from pluralign.data import load_any, to_samples
from pluralign.errors import DataError
from pluralign.objectives import ObjectiveSet
from pluralign.objectives.scoring import ScoreCache, score_samples


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_local_formats_and_pairwise_expansion(tmp_path):
    rows = [{"prompt": "p1", "chosen": " yes", "rejected": " no"}, {"prompt": "p2", "chosen": " a", "rejected": " b"}]
    ds = load_any(str(write_jsonl(tmp_path / "d.jsonl", rows)))
    samples = to_samples(ds)
    assert samples == [
        {"prompt": "p1", "response": " yes"},
        {"prompt": "p1", "response": " no"},
        {"prompt": "p2", "response": " a"},
        {"prompt": "p2", "response": " b"},
    ]
    ds.to_csv(str(tmp_path / "d.csv"))
    ds.to_parquet(str(tmp_path / "d.parquet"))
    assert to_samples(load_any(str(tmp_path / "d.csv"))) == samples
    assert to_samples(load_any(str(tmp_path / "d.parquet"))) == samples


def test_hh_style_dialogues_are_split_at_the_marker(tmp_path):
    rows = [{"chosen": "\n\nHuman: hi\n\nAssistant: hello!", "rejected": "\n\nHuman: hi\n\nAssistant: go away"}]
    samples = to_samples(load_any(str(write_jsonl(tmp_path / "hh.jsonl", rows))))
    assert samples[0] == {"prompt": "\n\nHuman: hi\n\nAssistant:", "response": " hello!"}
    assert samples[1]["response"] == " go away"


def test_conversational_prompts(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": "yo"}]}]
    samples = to_samples(load_any(str(write_jsonl(tmp_path / "c.jsonl", rows))))
    cache = ScoreCache(tmp_path / "c.sqlite")
    scores = score_samples(samples, ObjectiveSet.from_specs(["verbosity"]), cache)
    assert scores["verbosity"] == [1.0]


def test_score_cache_copy_holds_scores_still_in_the_write_ahead_log(tmp_path):
    """The chat demo hands the world's scores to RiC while the world's cache is open: a file copy missed
    the scores in SQLite's write-ahead log (RiC rescored all 600 offline samples); copy_to keeps them."""
    import shutil

    cache = ScoreCache(tmp_path / "world.sqlite")
    cache.put("harmless", {f"k{i}": float(i) for i in range(50)})
    shutil.copy2(tmp_path / "world.sqlite", tmp_path / "file_copy.sqlite")
    assert ScoreCache(tmp_path / "file_copy.sqlite").count() == 0  # what the demo did before
    cache.copy_to(tmp_path / "copy.sqlite")
    copied = ScoreCache(tmp_path / "copy.sqlite")
    assert copied.count("harmless") == 50 and copied.get("harmless", ["k7"]) == {"k7": 7.0}


def test_missing_prompt_column_names_it(tmp_path):
    ds = load_any(str(write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "response": "r"}])))
    with pytest.raises(DataError, match="no prompt column 'prompt'.*question.*--prompt_column"):
        to_samples(ds)
    assert to_samples(ds, prompt_column="question") == [{"prompt": "q", "response": "r"}]


def test_missing_dataset_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_any(str(tmp_path / "nope.jsonl"))


def test_scoring_cache_resumes_without_rescoring(tmp_path, monkeypatch):
    log = tmp_path / "scored.txt"
    monkeypatch.setenv("SCORER_LOG", str(log))
    monkeypatch.setenv("SCORER_FAIL", "1")
    samples = [{"prompt": "p", "response": "x" * i} for i in range(1, 11)]
    objectives = ObjectiveSet.from_specs(["n=tests.scorers:logged_length"])
    objectives.objectives[0].batch_size = 4
    with pytest.raises(KeyboardInterrupt):
        score_samples(samples, objectives, ScoreCache(tmp_path / "s.sqlite"), chunk_size=4)
    first = log.read_text().split()
    assert len(first) == 4 and ScoreCache(tmp_path / "s.sqlite").count() == 4
    monkeypatch.delenv("SCORER_FAIL")
    scores = score_samples(samples, objectives, ScoreCache(tmp_path / "s.sqlite"), chunk_size=4)
    second = log.read_text().split()[4:]
    assert len(second) == 6 and not set(second) & set(first)  # only the missing samples were scored
    assert scores["n"] == [float(i) for i in range(1, 11)]


def test_unique_prompts_keeps_first_seen_order_for_text_and_message_lists():
    from pluralign.data.loading import unique_prompts

    chat = [{"role": "user", "content": "hi"}]
    prompts = ["b", chat, "a", "b", [{"role": "user", "content": "hi"}], [{"role": "user", "content": "yo"}]]
    assert unique_prompts(prompts) == ["b", chat, "a", [{"role": "user", "content": "yo"}]]
    assert unique_prompts(prompts, limit=2) == ["b", chat]
