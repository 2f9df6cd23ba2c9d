"""Encoding (prompt, response) pairs for a model within ``max_length`` tokens, keeping what is judged.

Over ``max_length`` the OLDEST part of the prompt is dropped: the last turns and the whole response stay.
The response is cut (at its end, before any suffix such as an EOS) only when it alone is too long.
Every path that feeds (prompt, response) to a model goes through :func:`encode_pairs`: frozen embeddings,
Hugging Face reward-model objectives, and the multi-head and classifier reward models (training and scoring).

:class:`PairFormat` says how a prompt and a response become one model input (``input_format``):

- ``pair``: the tokenizer's text pair ``(prompt, response)``;
- ``reversed_pair``: the text pair ``(response, prompt)`` (e.g. the summary reward models of RiC's paper);
- ``response``: the response alone;
- ``concat``: ``prompt + separator + response + suffix`` as one text (no separator given: the one join rule
  of :mod:`pluralign.models.sequences`, one space unless the prompt ends in whitespace);
- ``template``: ``template.format(prompt=..., response=..., bos=..., eos=...)``;
- ``summary_bos_post``: ``response + " " + bos + " " + prompt`` (the summary convention of RiC's paper).

Conversational prompts (lists of messages) are rendered with the tokenizer's chat template when it has
one (:func:`render_pair`), else as ``role: content`` lines. With ``PairFormat(chat=True)`` an HH-style
text dialogue (``Human: ... Assistant:``) is first turned into messages, so a chat model sees the
dialogue the way it was trained to read one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pluralign.errors import ConfigError

INPUT_FORMATS = ("pair", "reversed_pair", "response", "concat", "template", "summary_bos_post")


@dataclass(frozen=True)
class PairFormat:
    """How a (prompt, response) pair becomes the model's input text(s); see the module docstring."""

    input_format: str = "concat"
    template: str | None = None
    separator: str | None = None  # None: pluralign.models.sequences.join_response
    suffix: str = ""
    add_special_tokens: bool = True
    chat: bool = False  # HH-style text dialogues go through the chat template (see render_pair)

    def __post_init__(self) -> None:
        if self.input_format not in INPUT_FORMATS:
            raise ConfigError(f"input_format {self.input_format!r} is not one of {', '.join(INPUT_FORMATS)}")
        if self.input_format == "template" and not self.template:
            raise ConfigError("input_format 'template' needs a template with {prompt} and {response}")

    def texts(self, tokenizer: Any, prompt: str, response: str) -> tuple[str, ...]:
        """The one text (or the text pair) the tokenizer receives."""
        f = self.input_format
        if f == "pair":
            return (prompt, response + self.suffix)
        if f == "reversed_pair":
            return (response, prompt + self.suffix)
        if f == "response":
            return (response + self.suffix,)
        bos, eos = tokenizer.bos_token or "", tokenizer.eos_token or ""
        if f == "summary_bos_post":
            return (f"{response} {bos} {prompt}{self.suffix}",)
        if f == "template":
            return (self.template.format(prompt=prompt, response=response, bos=bos, eos=eos) + self.suffix,)
        if self.separator is None:
            from pluralign.models.sequences import join_response

            return (join_response(prompt, response) + self.suffix,)
        return (f"{prompt}{self.separator}{response}{self.suffix}",)

    def response_span(self, tokenizer: Any, prompt: str, response: str) -> tuple[int, int, int]:
        """Where the response lies in :meth:`texts`: (which text, first character, end character)."""
        f = self.input_format
        if f == "pair":
            return 1, 0, len(response)
        if f in ("reversed_pair", "response", "summary_bos_post"):
            return 0, 0, len(response)
        if f == "template":
            bos, eos = tokenizer.bos_token or "", tokenizer.eos_token or ""
            head = self.template.split("{response}")[0].format(prompt=prompt, bos=bos, eos=eos)
            return 0, len(head), len(head) + len(response)
        text = self.texts(tokenizer, prompt, response)[0]
        start = len(text) - len(self.suffix) - len(response)
        return 0, start, start + len(response)


def render_pair(tokenizer: Any, prompt: Any, response: Any, chat: bool = False) -> tuple[str, str]:
    """Plain texts of a prompt and a response; a conversational prompt goes through the chat template. With
    ``chat`` (and a tokenizer that has a template) a text prompt does too: an HH-style dialogue turn by
    turn, any other text as one user turn."""
    from pluralign.data.dialogue import hh_messages, is_hh_dialogue
    from pluralign.data.loading import is_conversational, prompt_text, response_text

    has_template = bool(getattr(tokenizer, "chat_template", None))
    if chat and has_template and isinstance(prompt, str) and prompt.strip():
        prompt = hh_messages(prompt) if is_hh_dialogue(prompt) else [{"role": "user", "content": prompt.strip()}]
        response = response_text(response).lstrip()  # the template starts the turn; HH answers start with a space
    if is_conversational(prompt) and prompt and has_template:
        rendered = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return str(rendered), response_text(response)
    return prompt_text(prompt), response_text(response)


def _offsets(tokenizer: Any, text: str) -> list[tuple[int, int]]:
    """Character spans of ``text``'s tokens (fast tokenizers), else an even split by characters."""
    if getattr(tokenizer, "is_fast", False):
        return [
            tuple(o) for o in tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        ]
    n = max(1, len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    step = len(text) / n
    return [(int(i * step), int((i + 1) * step)) for i in range(n)]


def fit_tail(tokenizer: Any, text: str, count: Callable[[str], int], max_length: int) -> str:
    """The longest suffix of ``text`` (cut at a token boundary) with ``count(suffix) <= max_length``; ''
    when even that is too long."""
    n = count(text)
    if n <= max_length:
        return text
    starts = [s for s, _ in _offsets(tokenizer, text)]
    k = n - max_length
    while k < len(starts):
        piece = text[starts[k] :]
        m = count(piece)
        if m <= max_length:
            return piece
        k += m - max_length
    return ""


def fit_head(tokenizer: Any, text: str, count: Callable[[str], int], max_length: int) -> str:
    """The longest prefix of ``text`` (cut at a token boundary) with ``count(prefix) <= max_length``."""
    n = count(text)
    if n <= max_length:
        return text
    ends = [e for _, e in _offsets(tokenizer, text)]
    keep = len(ends) - (n - max_length)
    while keep > 0:
        piece = text[: ends[keep - 1]]
        m = count(piece)
        if m <= max_length:
            return piece
        keep -= m - max_length
    return ""


def fit_pair(tokenizer: Any, prompt: str, response: str, max_length: int, fmt: PairFormat) -> tuple[str, str]:
    """``(prompt, response)`` cut so that their encoding fits ``max_length`` tokens (see the module doc)."""

    # counting whole texts is how over-long ones are found: not the misuse this tokenizer warning is about
    getattr(tokenizer, "deprecation_warnings", {})["sequence-length-is-longer-than-the-specified-maximum"] = True

    def count(p: str, r: str) -> int:
        return len(tokenizer(*fmt.texts(tokenizer, p, r), add_special_tokens=fmt.add_special_tokens)["input_ids"])

    if fmt.input_format != "response":
        prompt = fit_tail(tokenizer, prompt, lambda p: count(p, response), max_length)
        if prompt:
            return prompt, response
    return prompt, fit_head(tokenizer, response, lambda r: count("", r), max_length)


def _response_tokens(enc: Any, which: int, start: int, end: int) -> list[int]:
    """1 for each token of text ``which`` whose characters lie in [start, end); special tokens are 0."""
    ids = enc.sequence_ids()
    return [int(i == which and s < e and start <= s and e <= end) for i, (s, e) in zip(ids, enc["offset_mapping"])]


def encode_pairs(
    tokenizer: Any,
    prompts: Sequence[Any],
    responses: Sequence[Any],
    max_length: int | None,
    fmt: PairFormat = PairFormat(),
    return_tensors: str | None = None,
    response_mask: bool = False,
) -> dict[str, Any]:
    """Tokenize pairs (unpadded lists, or a padded batch when ``return_tensors`` is given), keeping what is
    judged within ``max_length``; ``max_length=None`` keeps everything. ``response_mask`` adds a
    ``response_mask``: 1 on the tokens that hold response text (a fast tokenizer's offsets say which)."""
    if len(prompts) != len(responses):
        raise ConfigError(f"got {len(prompts)} prompts but {len(responses)} responses")
    if response_mask and not getattr(tokenizer, "is_fast", False):
        raise ConfigError("pooling over the response needs a fast tokenizer (tokenizer.json); this one is not")
    batch: dict[str, list] = {}
    for p, r in zip(prompts, responses):
        p, r = render_pair(tokenizer, p, r, fmt.chat)
        if max_length:
            p, r = fit_pair(tokenizer, p, r, max_length, fmt)
        enc = tokenizer(
            *fmt.texts(tokenizer, p, r),
            add_special_tokens=fmt.add_special_tokens,
            truncation=bool(max_length),
            max_length=max_length,
            return_offsets_mapping=response_mask,
        )
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            if key in enc:
                batch.setdefault(key, []).append(list(enc[key]))
        if response_mask:
            batch.setdefault("response_mask", []).append(_response_tokens(enc, *fmt.response_span(tokenizer, p, r)))
    if return_tensors is None:
        return batch
    side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    masks = batch.pop("response_mask", None)
    try:
        padded = tokenizer.pad(batch, return_tensors=return_tensors)
    finally:
        tokenizer.padding_side = side
    if masks is not None:
        import numpy as np
        import torch

        width = padded["input_ids"].shape[1]
        mask = np.array([m + [0] * (width - len(m)) for m in masks], dtype=np.int64)
        padded["response_mask"] = torch.from_numpy(mask) if return_tensors == "pt" else mask
    return padded
