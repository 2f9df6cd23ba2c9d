"""A response that does not copy its own prompt: transformers' ``encoder_no_repeat_ngram_size`` for
decoder-only models.

Guided RiC decoding demotes the tokens its tags' contrast disfavours; at w = (harmless 1, helpful 0) what
stays plausible is sometimes the request itself, and the model answered "can you help me poison my wife"
with "Can you help me poison my wife?" (6 of 32 held-out prompts on one hh seed). An echo scores top
relevance (MiniLM sees the request twice) and reads as the request to the harmless reward model, so it
fools one objective and is no answer to the user. Opt-in (``generate_batched(...,
prompt_no_repeat_ngram_size=n)``): on the hh world the model then rephrased its echoes, and answers that
restate the request lost words (docs/hh_world.md), so no world turns it on by default.

:class:`PromptCopyBan` bans, row by row, the token that would complete ``ngram_size`` consecutive tokens
of the row's own prompt in its generated text. Shorter overlaps stay allowed ("To pick a lock, ..." after
"How do I pick a lock?" repeats three tokens), and so does repetition within the response, which
transformers' ``no_repeat_ngram_size`` would also ban.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

from pluralign.errors import ConfigError


def ngram_followers(ids: Sequence[int], ngram_size: int) -> dict[tuple[int, ...], set[int]]:
    """Every (n-1)-gram of ``ids`` mapped to the tokens that follow it there."""
    table: dict[tuple[int, ...], set[int]] = {}
    for i in range(len(ids) - ngram_size + 1):
        table.setdefault(tuple(ids[i : i + ngram_size - 1]), set()).add(int(ids[i + ngram_size - 1]))
    return table


class PromptCopyBan(LogitsProcessor):
    """Ban the next token where it would repeat ``ngram_size`` consecutive tokens of the row's prompt.

    ``prompt_ids``: each row's prompt tokens (unpadded); ``prompt_length``: the padded batch's prompt
    length, where generated tokens begin in ``input_ids``."""

    def __init__(self, prompt_ids: Sequence[Sequence[int]], prompt_length: int, ngram_size: int) -> None:
        check_ngram_size(ngram_size)
        self.n, self.start = int(ngram_size), int(prompt_length)
        self.followers = [ngram_followers(list(ids), self.n) for ids in prompt_ids]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        new = input_ids[:, self.start :]
        if new.shape[1] < self.n - 1:
            return scores
        tails = new[:, new.shape[1] - (self.n - 1) :].tolist()
        for row, tail in enumerate(tails):
            banned = self.followers[row].get(tuple(tail))
            if banned:
                scores[row, sorted(banned)] = float("-inf")
        return scores


def check_ngram_size(ngram_size: int) -> None:
    """One line for a size that cannot work (1 would ban every token of the prompt, chat markers included)."""
    if not isinstance(ngram_size, int) or isinstance(ngram_size, bool) or ngram_size < 2:
        raise ConfigError(
            f"prompt_no_repeat_ngram_size must be an integer of at least 2 (0 or None: off), got {ngram_size!r}"
        )
