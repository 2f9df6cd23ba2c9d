"""Generation cleaning (fidelity issue 13.1): cut at the next turn, no EOS first, drop degenerate samples."""

from __future__ import annotations

import pytest
import torch

from pluralign.generation.batched import generate_batched
from pluralign.generation.cleaning import Cleaning, cut_at_turn, end_of_turn_ids, is_degenerate, keep_mask, truncate_ids


def test_cut_at_the_first_turn_marker():
    assert cut_at_turn("Paris is the capital.\n\nHuman: and Spain?\n\nAssistant: Madrid") == "Paris is the capital."
    assert cut_at_turn(" Sure.\nAssistant: again") == "Sure."
    assert cut_at_turn("no marker here ") == "no marker here"
    assert cut_at_turn("\n\nHuman: only an invented turn") == ""


@pytest.mark.parametrize("text", ["", "   ", "...", "?!", " - ", "\n\n"])
def test_degenerate_responses(text):
    assert is_degenerate(text)


@pytest.mark.parametrize("text", ["ok", "No.", "42", "I can't help with that."])
def test_real_responses_are_kept(text):
    assert not is_degenerate(text)


def test_keep_mask_is_configurable():
    texts = ["fine", "", "...", "Yes!"]
    assert keep_mask(texts) == [True, False, False, True]
    assert keep_mask(texts, Cleaning(drop_degenerate=False)) == [True] * 4
    assert keep_mask(texts, Cleaning.off()) == [True] * 4


def test_truncate_ids_stops_at_the_first_end_of_turn_token():
    assert truncate_ids([[5, 6, 2, 7, 2], [2, 9], [4]], [2]) == [[5, 6], [], [4]]


class _Tok:
    """A character-level tokenizer with chat-template specials (id 2 = <|im_end|> = EOS, 0 = pad)."""

    specials = {0: "<pad>", 1: "<|im_start|>", 2: "<|im_end|>"}

    def __init__(self) -> None:
        self.pad_token, self.eos_token = "<pad>", "<|im_end|>"
        self.pad_token_id, self.eos_token_id = 0, 2
        self.padding_side = "right"

    def get_vocab(self):
        return {v: k for k, v in self.specials.items()}

    def encode(self, text: str) -> list[int]:
        return [ord(c) + 3 for c in text]

    def __call__(self, texts, return_tensors=None, padding=False, add_special_tokens=False):
        if isinstance(texts, str):
            return {"input_ids": self.encode(texts)}
        rows = [self.encode(t) for t in texts]
        n = max(len(r) for r in rows)
        ids = [[0] * (n - len(r)) + r for r in rows]  # left padding
        mask = [[0] * (n - len(r)) + [1] * len(r) for r in rows]
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}

    def batch_decode(self, rows, skip_special_tokens=True):
        out = []
        for row in rows:
            row = row.tolist() if hasattr(row, "tolist") else row
            out.append("".join("" if t in self.specials else chr(t - 3) for t in row))
        return out


class _DialogueModel(torch.nn.Module):
    """Writes its answer, then an invented next turn; EOS comes first unless begin_suppress_tokens forbids it
    (as transformers' SuppressTokensAtBeginLogitsProcessor does)."""

    def __init__(self, tok: _Tok) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.tok = tok
        self.seen: list[dict] = []

    def generate(self, input_ids, attention_mask=None, **kwargs):
        self.seen.append(kwargs)
        eos_first = 2 not in (kwargs.get("begin_suppress_tokens") or [])
        text = "Paris.\n\nHuman: and Spain?" if not eos_first else ""
        new = ([2] if eos_first else []) + self.tok.encode(text) + [2, 0, 0]
        return torch.cat([input_ids, torch.tensor([new] * input_ids.shape[0])], dim=1)


def test_generation_is_cleaned_by_default():
    tok = _Tok()
    model = _DialogueModel(tok)
    out = generate_batched(model, tok, ["Capital of France?", "Q?"], max_new_tokens=32)
    assert out == ["Paris.", "Paris."]  # before the fix: "" (EOS first) or "Paris.\n\nHuman: and Spain?"
    assert 2 in model.seen[0]["begin_suppress_tokens"]


def test_cleaning_off_gives_the_raw_generation():
    tok = _Tok()
    out = generate_batched(_DialogueModel(tok), tok, ["Capital of France?"], cleaning=Cleaning.off())
    assert out == [""]


def test_end_of_turn_ids_include_chat_markers():
    assert end_of_turn_ids(_Tok()) == [1, 2]


def test_ric_online_drops_degenerate_generations():
    from pluralign.methods.ric.config import RiCConfig
    from pluralign.methods.ric.trainer import _drop_degenerate

    gen = [{"prompt": "p", "response": r} for r in ["A real answer.", "", "...", "ok"]]
    on = RiCConfig(output_dir="/tmp/unused", report_to="none")
    kept = _drop_degenerate(gen, on, lambda _m: None, 1)
    assert [g["response"] for g in kept] == ["A real answer.", "ok"]
    off = RiCConfig(output_dir="/tmp/unused", report_to="none", clean_generations=False)
    assert len(_drop_degenerate(gen, off, lambda _m: None, 1)) == 4
