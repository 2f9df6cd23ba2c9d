"""Cleaning generated responses (RiC reference ``get_clean_data``): on by default for every generation.

A dialogue-trained model keeps writing after its answer: an invented ``Human:`` turn, the next
``Assistant:`` turn, or the chat template's end-of-turn / start-of-turn tokens. Scoring that text
rewards the wrong thing, so every response is:

1. **cut** at the first turn marker (``\\n\\nHuman:``, ``\\nHuman:``, ``\\n\\nAssistant:``,
   ``\\nAssistant:``) and, at the token level, at the first end-of-turn token of the tokenizer (its
   EOS tokens and chat-template markers such as ``<|im_end|>`` / ``<|im_start|>``);
2. never **empty by construction**: EOS may not be the first generated token
   (transformers' ``begin_suppress_tokens``);
3. **dropped** when degenerate (empty, whitespace, or only punctuation/symbols) where a caller may drop
   samples: the online MORS buffer (reference ``remove_bad=True``); evaluation keeps every prompt
   and scores the cleaned text (reference ``remove_bad=False``).

:class:`Cleaning` holds the switches; ``Cleaning(enabled=False)`` restores raw generation.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

TURN_MARKERS: tuple[str, ...] = ("\n\nHuman:", "\nHuman:", "\n\nAssistant:", "\nAssistant:")
# chat-template markers that end an assistant turn (besides the tokenizer's EOS tokens)
END_OF_TURN_TOKENS: tuple[str, ...] = ("<|im_end|>", "<|im_start|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "</s>")
_DEGENERATE = re.compile(r"^[\W_]*$")  # nothing but punctuation, symbols, whitespace


@dataclass
class Cleaning:
    """Switches of generation cleaning (all on by default)."""

    enabled: bool = True
    turn_markers: Sequence[str] = field(default_factory=lambda: TURN_MARKERS)
    suppress_eos_first: bool = True
    drop_degenerate: bool = True

    @classmethod
    def off(cls) -> Cleaning:
        return cls(enabled=False)


DEFAULT = Cleaning()


def cut_at_turn(text: str, markers: Sequence[str] = TURN_MARKERS) -> str:
    """``text`` up to the first turn marker (the invented next turn is dropped), stripped."""
    cut = len(text)
    for m in markers:
        i = text.find(m)
        if i != -1:
            cut = min(cut, i)
    return text[:cut].strip()


def is_degenerate(text: str) -> bool:
    """Empty, whitespace, or only punctuation/symbol runs ("...", "!!!", "?")."""
    return bool(_DEGENERATE.match(text))


_EOT_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """Token ids that end an assistant turn: the EOS token(s) and known chat-template markers (cached per
    tokenizer: reading a large vocabulary costs tens of milliseconds, and servers ask per request)."""
    try:
        cached = _EOT_CACHE.get(tokenizer)
    except TypeError:  # not weak-referenceable
        cached = None
    if cached is not None and cached[0] == tokenizer.eos_token_id:
        return list(cached[1])
    ids = _end_of_turn_ids(tokenizer)
    try:
        _EOT_CACHE[tokenizer] = (tokenizer.eos_token_id, tuple(ids))
    except TypeError:
        pass
    return ids


def _end_of_turn_ids(tokenizer: Any) -> list[int]:
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    for tok in END_OF_TURN_TOKENS:
        if tok in vocab:
            ids.add(int(vocab[tok]))
    return sorted(ids)


def generation_overrides(tokenizer: Any, cleaning: Cleaning = DEFAULT) -> dict[str, Any]:
    """Extra ``generate`` kwargs: suppress end-of-turn tokens as the first new token."""
    if not (cleaning.enabled and cleaning.suppress_eos_first):
        return {}
    return {"begin_suppress_tokens": end_of_turn_ids(tokenizer)}


def truncate_ids(rows: Any, stop_ids: Sequence[int]) -> list[list[int]]:
    """Each row of new token ids cut before its first end-of-turn id (padding after EOS goes too)."""
    stops = set(int(i) for i in stop_ids)
    out = []
    for row in rows:
        ids = [int(t) for t in row]
        for j, t in enumerate(ids):
            if t in stops:
                ids = ids[:j]
                break
        out.append(ids)
    return out


def clean_text(text: str, cleaning: Cleaning = DEFAULT) -> str:
    """One decoded response, cut at the next turn (unchanged when cleaning is off)."""
    return cut_at_turn(text, cleaning.turn_markers) if cleaning.enabled else text


def keep_mask(texts: Sequence[str], cleaning: Cleaning = DEFAULT) -> list[bool]:
    """Which (already cleaned) responses to keep where degenerate samples are dropped."""
    if not (cleaning.enabled and cleaning.drop_degenerate):
        return [True] * len(texts)
    return [not is_degenerate(t) for t in texts]
