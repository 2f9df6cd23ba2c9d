"""Streamed text deltas add up to exactly the cleaned response, whatever the tokens (real SmolLM2 tokenizer)."""

from __future__ import annotations

import pytest

from pluralign.generation.cleaning import clean_text
from pluralign.generation.text_stream import TokenText, apply_stop


@pytest.fixture(scope="module")
def tok():
    from pluralign.models.loading import load_tokenizer

    return load_tokenizer("builtin:smollm2-135m-instruct")


CASES = [
    ("  Hello there, the café was naïve 😀 and fine.  ", ()),
    ("First answer.\nHuman: an invented next turn", ()),
    ("Short one\n\nAssistant: again", ()),
    ("Count: one, two, three, STOP here and more", ("STOP",)),
    ("no stop string in this one at all", ("zzz",)),
]


@pytest.mark.parametrize("text,stop", CASES)
def test_deltas_add_up_to_the_cleaned_text_and_never_take_anything_back(tok, text, stop):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    stream = TokenText(tok, stop=stop)
    out, seen = "", []
    for i in ids:
        final = stream.add(i)
        delta = stream.take()
        out += delta
        seen.append(out)
        if final:
            break
    stream.done = True
    out += stream.take()
    expected = apply_stop(clean_text(tok.decode(ids, skip_special_tokens=True)), stop)
    assert out == stream.final_text() == expected
    assert all(expected.startswith(s) for s in seen)  # every intermediate text is a prefix of the answer
    assert len([1 for a, b in zip([""] + seen, seen) if a != b]) >= 2  # it came in several pieces


def test_text_is_final_at_a_turn_marker_or_an_end_of_turn_token(tok):
    stream = TokenText(tok)
    ids = tok("An answer.\nHuman: more", add_special_tokens=False)["input_ids"]
    finals = [stream.add(i) for i in ids]
    assert finals[-1] and not finals[0] and stream.final_text() == "An answer."
    eos = TokenText(tok)
    eos.add(tok("Yes", add_special_tokens=False)["input_ids"][0])
    assert eos.add(tok.eos_token_id) and eos.completion_tokens == 1 and eos.final_text() == "Yes"
