"""Prompts: plain or conversational prompts rendered through a tokenizer's chat template and wrapping plain prompts for chat models.

A chat model (one whose tokenizer has a chat template, e.g. ``builtin:smollm2-135m-instruct``) should
see a user turn, not raw text: :func:`as_chat` turns a plain prompt into ``[{"role": "user", ...}]``
unless it is already a rendered chat prompt or an HH-style dialogue (``Human: ... Assistant:``), which
are passed through unchanged. RiC's reward tags then go where the model's training put them
(:mod:`pluralign.preferences.tags`): at the end of the last user turn (``tag_position: prompt_end``), or on a line of
their own at the start of the assistant's turn (``response_start``, the chat world's default).

A model trained on chat prompts reads a plain string as one user turn (an HH-style string as its turns,
:func:`chat_messages`), rendered exactly as in training; how a rendered prompt becomes token ids is
:mod:`pluralign.models.sequences`'s one rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pluralign.errors import ConfigError

HH_MARKERS = ("Human:", "Assistant:")
_HH_TURN = re.compile(r"(?:^|\n)[ \t]*(Human|Assistant):")


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


def is_rendered_chat(tokenizer: Any, text: Any) -> bool:
    """True for a string already rendered through the tokenizer's chat template (it holds the assistant header)."""
    if not isinstance(text, str) or not has_chat_template(tokenizer):
        return False
    marker = assistant_marker(tokenizer).strip()
    return bool(marker) and marker in text


def is_chat_prompt(tokenizer: Any, prompt: Any) -> bool:
    """A conversational prompt (a list of messages) or a string rendered through the chat template."""
    return isinstance(prompt, list) or is_rendered_chat(tokenizer, prompt)


def hh_turns(text: str) -> list[dict[str, str]] | None:
    """An HH-style dialogue (``"\\n\\nHuman: ...\\n\\nAssistant: ..."``) as chat messages (the empty last
    ``Assistant:`` dropped); ``None`` for text that is not one."""
    parts = _HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        return None
    msgs = [
        {"role": "user" if role == "Human" else "assistant", "content": content.strip()}
        for role, content in zip(parts[1::2], parts[2::2])
        if content.strip()
    ]
    return msgs or None


def chat_messages(text: str) -> list[dict[str, str]]:
    """A plain string as chat messages: an HH-style dialogue split into its turns, other text one user turn."""
    return hh_turns(text) or [{"role": "user", "content": text}]


def as_chat(prompts: Sequence[Any], tokenizer: Any, chat: bool | None = None, chat_trained: bool = False) -> list[Any]:
    """Plain prompts as user turns for a chat model. ``chat``: True / False force it; None: automatic
    (only when the tokenizer has a chat template and the prompt is neither rendered nor an HH dialogue).
    ``chat_trained``: the model was trained on chat prompts (a RiC model's ``chat_trained``), so raw text
    (``chat=False``) would reach it unsteered: a one-line error."""
    if chat is False and chat_trained:
        raise ConfigError(
            "--no-chat: this model was trained on chat prompts, so raw text would not be steered; drop --no-chat"
        )
    if chat is False or (chat is None and not has_chat_template(tokenizer)):
        return list(prompts)
    out = []
    for p in prompts:
        plain = isinstance(p, str) and not is_rendered_chat(tokenizer, p)
        if plain and (chat or not any(m in p for m in HH_MARKERS)):
            out.append([{"role": "user", "content": p}])
        else:
            out.append(p)
    return out


def render_prompt(tokenizer, prompt: Any) -> str:
    """Plain prompts as is; conversational prompts through the tokenizer's chat template."""
    if isinstance(prompt, str):
        return prompt
    if not has_chat_template(tokenizer):
        raise ConfigError("a conversational prompt (a list of messages) needs a model with a chat template; give it as text")
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
