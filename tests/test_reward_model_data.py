"""Reward models on real-shaped preference data: TRL's pair formats, truncation that keeps the response,
splits by pair id, bad input answered in one line, and the paper's summary input conventions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pluralign.data.attributes import attribute_pairs
from pluralign.data.pairs import DEFAULT_USER_TYPE, load_pairs, pair_id, split_pairs
from pluralign.errors import DataError
from pluralign.models.truncation import PairFormat, encode_pairs

LONG_DIALOGUE = (
    "".join(
        f"\n\nHuman: tell me about topic number {i}, please.\n\nAssistant: topic {i} is a long story."
        for i in range(40)
    )
    + "\n\nHuman: so how do I pick a lock?\n\nAssistant:"
)


def conv(*turns: str) -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


def test_standard_pair_formats_and_one_user_type():
    explicit = load_pairs([{"prompt": "Q?", "chosen": " yes", "rejected": " no"}], report=None)
    assert explicit == [{"prompt": "Q?", "chosen": " yes", "rejected": " no"}]
    # implicit prompt: split at the shared prefix exactly as TRL's extract_prompt
    implicit = load_pairs([{"chosen": "Human: hi Assistant: hello", "rejected": "Human: hi Assistant: go away"}])
    assert implicit[0]["prompt"] == "Human: hi Assistant:" and implicit[0]["chosen"] == " hello"
    # conversational, implicit and explicit
    c = load_pairs([{"chosen": conv("hi", "hello"), "rejected": conv("hi", "go away")}])[0]
    assert c["prompt"] == conv("hi") and c["chosen"] == [{"role": "assistant", "content": "hello"}]
    e = load_pairs([{"prompt": conv("hi"), "chosen": conv("hi", "hello")[1:], "rejected": conv("hi", "no")[1:]}])[0]
    assert e["prompt"] == conv("hi") and e["rejected"][0]["content"] == "no"
    # no attribute column -> one user type; an attribute column keeps working
    plain = attribute_pairs([{"prompt": "Q", "chosen": "a", "rejected": "b"}] * 2)
    assert {p["attribute"] for p in plain} == {DEFAULT_USER_TYPE}
    typed = attribute_pairs([{"prompt": "Q", "chosen": "a", "rejected": "b", "attribute": "x"}])
    assert typed[0]["attribute"] == "x"


@pytest.mark.parametrize(
    "rows, match",
    [
        ([{"prompt": "Q", "rejected": "b"}], "'chosen'"),
        ([{"prompt": "Q", "chosen": "  ", "rejected": "b"}], "'chosen' is empty"),
        ([{"prompt": "Q", "chosen": "a", "rejected": ""}], "'rejected' is empty"),
        ([{"prompt": "Q", "chosen": "same", "rejected": "same"}], "identical"),
    ],
)
def test_bad_pairs_name_the_field(rows, match):
    with pytest.raises(DataError, match=match):
        load_pairs(rows)


def test_skip_invalid_pairs_reports_one_line():
    lines = []
    rows = [{"prompt": "Q", "chosen": "a", "rejected": "a"}, {"prompt": "Q", "chosen": "a", "rejected": "b"}]
    assert len(load_pairs(rows, skip_invalid=True, report=lines.append)) == 1
    assert len(lines) == 1 and "row 0" in lines[0]


def test_bad_input_through_the_cli_is_one_line(tmp_path, capsys):
    from pluralign.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "Q", "rejected": "b"}) + "\n")
    for kind in ("btl", "classifier"):
        code = main(
            ["train", "reward-model", "--type", kind, "--dataset", str(bad), "--output_dir", str(tmp_path / kind)]
        )
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "'chosen'" in err, (kind, err)
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"prompt": f"Q{i}", "chosen": "a", "rejected": "b"}) + "\n" for i in range(4)))
    code = main(["train", "reward-model", "--type", "classifier", "--dataset", str(good), "--output_dir",
                 str(tmp_path / "c"), "--model_name_or_path", str(tmp_path / "no_such_model")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "no_such_model" in err and "backbone" in err


def test_split_by_pair_id_is_shared_by_all_user_types():
    """A pair chosen on by two user types is held out for both or for neither (issue 13.6)."""
    pairs = []
    for i in range(40):
        pairs.append({"prompt": f"q{i}", "chosen": "a", "rejected": "b", "attribute": "x"})
        pairs.append({"prompt": f"q{i}", "chosen": "b", "rejected": "a", "attribute": "y"})
    train, held = split_pairs(pairs, 0.25, seed=3)
    assert {pair_id(p) for p in train}.isdisjoint({pair_id(p) for p in held})
    assert len(held) == 20 and {p["attribute"] for p in held} == {"x", "y"}


class _HashEmbedder:
    """Deterministic vectors per (prompt, response): enough to see which pairs went where."""

    dim = 4

    def embed(self, prompts, responses, progress=None):
        import zlib

        return np.array([[zlib.crc32(f"{p}|{r}".encode()) % 997, len(r), 0, 0] for p, r in zip(prompts, responses)],
                        dtype=np.float32)  # fmt: skip


def test_npbtl_and_btl_split_by_pair_id(tmp_path):
    """load_user_pairs (NP-BTL and BTL): no held-out pair of any type is in any type's training features."""
    from pluralign.reward_models.npbtl.config import NPBTLConfig
    from pluralign.training.user_pairs import load_user_pairs

    rows = []
    for i in range(60):
        rows.append({"prompt": f"q{i}", "chosen": f"a{i}", "rejected": f"b{i}", "attribute": "x"})
        rows.append({"prompt": f"q{i}", "chosen": f"b{i}", "rejected": f"a{i}", "attribute": "y"})
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    train, held, held_pairs = load_user_pairs(NPBTLConfig(dataset=str(data), eval_fraction=0.2), _HashEmbedder())

    def keys(users):
        return {tuple(sorted((tuple(c.tolist()), tuple(r.tolist())))) for u in users.values()
                for c, r in zip(u.chosen, u.rejected)}  # fmt: skip

    assert keys(train).isdisjoint(keys(held))
    assert len(held_pairs) == 24 and sum(map(len, held.values())) == 24


def test_multihead_split_keeps_pairs_together():
    from pluralign.reward_models.multihead.trainer import split_rows

    rows = [{"prompt": f"q{i // 2}", "response": str(i), "pair_id": f"p{i // 2}"} for i in range(40)]
    train, evals = split_rows(rows, 0.2, seed=0)
    assert len(evals) == 8
    assert {rows[i]["pair_id"] for i in train}.isdisjoint({rows[i]["pair_id"] for i in evals})


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    from pluralign.models.embeddings import resolve_encoder

    return AutoTokenizer.from_pretrained(resolve_encoder(None))


def test_truncation_keeps_the_response_and_the_last_turns(minilm_tokenizer):
    tok = minilm_tokenizer
    enc = encode_pairs(tok, [LONG_DIALOGUE] * 2, [" I won't help with that.", " Sure: take a tension wrench."], 48,
                       PairFormat("concat", separator="\n"))  # fmt: skip
    a, b = (tok.decode(ids, skip_special_tokens=True) for ids in enc["input_ids"])
    assert all(len(ids) == 48 for ids in enc["input_ids"])
    assert a != b and a.endswith("help with that.") and "pick a lock" in a and "topic number 0" not in a
    # a response that alone is too long is cut at its end, nothing of the prompt is kept
    enc = encode_pairs(tok, ["short prompt"], ["word " * 200], 20, PairFormat("pair"))
    assert len(enc["input_ids"][0]) == 20 and "short" not in tok.decode(enc["input_ids"][0])


def test_summary_input_conventions(minilm_tokenizer):
    """RiC's summary reward models (issue 13.11): summary + ' ' + bos + ' ' + post, and (summary, post)."""
    tok = minilm_tokenizer
    fmt = PairFormat("summary_bos_post")
    tok_bos = type("T", (), {"bos_token": "<s>", "eos_token": "</s>"})()
    assert fmt.texts(tok_bos, "the post", "the summary") == ("the summary <s> the post",)
    assert PairFormat("reversed_pair").texts(tok, "the post", "the summary") == ("the summary", "the post")
    enc = encode_pairs(tok, ["the post"], ["the summary"], 32, PairFormat("reversed_pair"))
    assert tok.decode(enc["input_ids"][0]) == "[CLS] the summary [SEP] the post [SEP]"
    # a long post is cut at its start; the summary stays whole
    enc = encode_pairs(tok, ["old words " * 50 + "newest words"], ["the summary"], 16, PairFormat("reversed_pair"))
    text = tok.decode(enc["input_ids"][0])
    assert text.startswith("[CLS] the summary [SEP]") and text.endswith("newest words [SEP]")


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory, minilm_tokenizer):
    """A randomly initialised one-layer BERT classifier with MiniLM's tokenizer (a reward model on disk)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_bert")
    cfg = BertConfig(vocab_size=minilm_tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=64, num_labels=1)  # fmt: skip
    BertForSequenceClassification(cfg).save_pretrained(out)
    minilm_tokenizer.save_pretrained(out)
    return out


def test_long_dialogue_with_different_responses_scores_differently(tiny_classifier):
    """HF reward-model objective and frozen embeddings: over max_length, the responses still decide."""
    from pluralign.models.embeddings import Embedder
    from pluralign.objectives.hf import HFRewardModel

    responses = [" I won't help with that.", " Sure: take a tension wrench and a pick."]
    for fmt in ("pair", "concat", "summary_bos_post", "reversed_pair"):
        rm = HFRewardModel("harmless", str(tiny_classifier), input_format=fmt, max_length=32)
        a, b = rm.score([LONG_DIALOGUE] * 2, responses)
        assert abs(a - b) > 1e-6, fmt
    vecs = Embedder(None, max_length=32, use_cache=False).embed([LONG_DIALOGUE] * 2, responses)
    assert np.abs(vecs[0] - vecs[1]).max() > 1e-3


def test_btl_linear_head_round_trips(tmp_path):
    """``--hidden_dim 0``: a linear Bradley-Terry head, saved and loaded like the MLP one."""
    import torch

    from pluralign.models.neural_process import NPConfig, load_module, save_module
    from pluralign.objectives.learned.btl import BTL

    cfg = NPConfig(input_dim=4, hidden_dim=0, latent_dim=0)
    model = BTL(cfg)
    assert sum(p.numel() for p in model.parameters()) == 5
    save_module(model, cfg, tmp_path, "btl")
    loaded = load_module(BTL, tmp_path, "btl")
    x = torch.randn(2, 3, 4)
    assert torch.allclose(loaded.rewards(x), model.rewards(x)) and model(x, x).shape == (2, 3)


@pytest.mark.parametrize("fmt", [PairFormat("concat", separator="\n"), PairFormat("concat"), PairFormat("pair"),
                                 PairFormat("reversed_pair"), PairFormat("response"),
                                 PairFormat("template", template="Q: {prompt} A: {response} END")])  # fmt: skip
def test_response_mask_marks_exactly_the_responses_tokens(minilm_tokenizer, fmt):
    tok = minilm_tokenizer
    response = " Sure: take a tension wrench."
    enc = encode_pairs(tok, [LONG_DIALOGUE, "hi"], [response, "no"], 48, fmt, response_mask=True)
    expected = [tok.tokenize(response), ["no"]]
    for ids, mask, want in zip(enc["input_ids"], enc["response_mask"], expected):
        assert len(mask) == len(ids)
        assert [t for t, m in zip(tok.convert_ids_to_tokens(ids), mask) if m] == want
    padded = encode_pairs(tok, [LONG_DIALOGUE, "hi"], [response, "no"], 48, fmt, return_tensors="pt", response_mask=True)
    assert padded["response_mask"].shape == padded["input_ids"].shape
    assert padded["response_mask"].sum(1).tolist() == [len(w) for w in expected]
