"""A response as it is generated: token ids in, text deltas out, whose concatenation is exactly the cleaned
response that the whole-response path returns.

Every generated response is cleaned (:mod:`pluralign.generation.cleaning`): decoded up to the first
end-of-turn token, cut at the first turn marker (``\\nHuman:``, ...), stripped, then cut at the request's
``stop`` strings. A streamed delta may only carry text that no later token can take back, so
:class:`TokenText` holds back what is still undecided: an incomplete UTF-8 character, trailing
whitespace (``strip`` may drop it), a tail that could still grow into a turn marker or a stop string,
and, for tokenizers that clean up spaces around punctuation when decoding, the last word. Once a
turn marker or a stop string is complete the text is final, and :meth:`TokenText.add` says so, which
lets the decoder free the row at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pluralign.generation.cleaning import DEFAULT, Cleaning, clean_text, end_of_turn_ids


def apply_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` cut before the first of the ``stop`` strings (unchanged when none occurs)."""
    cuts = [text.find(s) for s in stop if s in text]
    return text[: min(cuts)] if cuts else text


def _held_tail(text: str, markers: Sequence[str]) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of one of ``markers``."""
    best = 0
    for m in markers:
        for n in range(min(len(m) - 1, len(text)), best, -1):
            if text.endswith(m[:n]):
                best = n
                break
    return best


class TokenText:
    """One response's text, fed one token id at a time (:meth:`add`), read as deltas (:meth:`take`).

    ``final_text()`` is the cleaned response: the same string the whole-response path
    (:func:`pluralign.generation.batched.generate_batched`, then the ``stop`` cut) gives for these tokens.
    """

    def __init__(
        self,
        tokenizer: Any,
        stop: Sequence[str] = (),
        cleaning: Cleaning | None = None,
        stop_ids: Sequence[int] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.cleaning = cleaning or DEFAULT
        self.stop = [s for s in stop if s]
        self.markers = list(self.cleaning.turn_markers) if self.cleaning.enabled else []
        ids = stop_ids if stop_ids is not None else (end_of_turn_ids(tokenizer) if self.cleaning.enabled else [])
        self.stop_ids = {int(i) for i in ids}
        self.ids: list[int] = []
        self.raw = ""  # the decoded text of the settled tokens, grown a few tokens at a time
        self._prefix = self._read = 0  # incremental decoding window (as vLLM detokenizes)
        self.emitted = ""
        self.done = False  # no token can change the text any more
        self.hit_stop_id = False
        self._final: str | None = None
        # tokenizers that clean up spaces when decoding (" ." -> ".") can change the last word
        self.hold_word = bool(getattr(tokenizer, "clean_up_tokenization_spaces", False))

    def _decode(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)

    def add(self, token_id: int) -> bool:
        """Take one generated token; True when the text is final (an end-of-turn token, a turn marker or a stop)."""
        if self.done:
            return True
        token_id = int(token_id)
        if token_id in self.stop_ids:
            self.hit_stop_id = True
            self.done = True
            return True
        self.ids.append(token_id)
        self._extend()
        if self.markers or self.stop:
            raw = self.raw
            if any(m in raw for m in self.markers) or any(s in self.clean(raw) for s in self.stop):
                self.done = True
        return self.done

    def _extend(self) -> None:
        """Decode only the newest tokens, with a few earlier ones as context (the text a token adds can
        depend on its neighbours: a leading space, a multi-byte character split over tokens)."""
        decode = self.tokenizer.decode
        prefix = decode(self.ids[self._prefix : self._read], skip_special_tokens=True)
        window = decode(self.ids[self._prefix :], skip_special_tokens=True)
        if len(window) > len(prefix) and window.startswith(prefix) and not window.endswith("\ufffd"):
            self.raw += window[len(prefix) :]
            self._prefix, self._read = self._read, len(self.ids)

    @property
    def completion_tokens(self) -> int:
        """Tokens generated for this response (the end-of-turn token excluded)."""
        return len(self.ids)

    def clean(self, raw: str) -> str:
        return clean_text(raw, self.cleaning)

    def final_text(self) -> str:
        """The whole cleaned response (the text every streamed delta adds up to once the row has ended)."""
        if self._final is None or not self.done:
            self._final = apply_stop(self.clean(self._decode()), self.stop)
        return self._final

    def _safe_text(self) -> str:
        """The longest text no later token can change."""
        raw = self.raw
        if self.cleaning.enabled:
            raw = raw[: len(raw) - _held_tail(raw, self.markers)]
            raw = raw.rstrip().lstrip()
        if self.hold_word:
            cut = max(raw.rfind(" "), raw.rfind("\n"), raw.rfind("\t"))
            raw = raw[: cut + 1].rstrip() if cut >= 0 else ""
        if self.stop:
            cut = [raw.find(s) for s in self.stop if s in raw]
            raw = raw[: min(cut)] if cut else raw[: len(raw) - _held_tail(raw, self.stop)]
        return raw

    def take(self) -> str:
        """The new text since the last call (everything left once the text is final)."""
        text = self.final_text() if self.done else self._safe_text()
        if not self.done and not text.startswith(self.emitted):
            return ""  # the decoder changed earlier text; wait for it to settle
        delta = text[len(self.emitted) :]
        self.emitted += delta
        return delta

    def finish(self) -> str:
        """End the response (max tokens reached, or the row was stopped): the last delta."""
        self.done = True
        return self.take()
