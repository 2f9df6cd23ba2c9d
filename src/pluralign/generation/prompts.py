"""Prompts: plain or conversational prompts rendered through a tokenizer's chat template and wrapping plain prompts for chat models.

A chat model (one whose tokenizer has a chat template, e.g. ``builtin:smollm2-135m-instruct``) should
see a user turn, not raw text: :func:`as_chat` turns a plain prompt into ``[{"role": "user", ...}]``
unless it is already a rendered chat prompt or an HH-style dialogue (``Human: ... Assistant:``), which
are passed through unchanged. RiC's reward tags then go where the model's training put them
(:mod:`pluralign.preferences.tags`): at the end of the last user turn (``tag_position: prompt_end``), or on a line of
their own at the start of the assistant's turn (``response_start``, the chat world's default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

HH_MARKERS = ("Human:", "Assistant:")


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render(tokenizer: Any, user: str, system: str | None = None) -> str:
    """A single-turn chat prompt through the chat template, ending with the assistant header."""
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def assistant_marker(tokenizer: Any) -> str:
    """The text the chat template puts between the user's words and the response (RiC's tags go right
    before it, or right after it with ``tag_position: response_start``)."""
    probe = render(tokenizer, "\x00")
    return probe[probe.index("\x00") + 1 :]


def as_chat(prompts: Sequence[Any], tokenizer: Any, chat: bool | None = None) -> list[Any]:
    """Plain prompts as user turns for a chat model. ``chat``: True / False force it; None: automatic
    (only when the tokenizer has a chat template and the prompt is neither rendered nor an HH dialogue)."""
    if chat is False or (chat is None and not has_chat_template(tokenizer)):
        return list(prompts)
    marker = assistant_marker(tokenizer).strip() if has_chat_template(tokenizer) else None
    out = []
    for p in prompts:
        plain = isinstance(p, str) and not (marker and marker in p)
        if plain and (chat or not any(m in p for m in HH_MARKERS)):
            out.append([{"role": "user", "content": p}])
        else:
            out.append(p)
    return out


def render_prompt(tokenizer, prompt: Any) -> str:
    """Plain prompts as is; conversational prompts through the tokenizer's chat template."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
