"""HH-style text dialogues (``\\n\\nHuman: ...\\n\\nAssistant: ...``) as chat messages.

Anthropic's HH-RLHF pairs (and datasets built like them) hold a whole dialogue as one string. A chat
model judges a dialogue best in the form it was trained on, its chat template, so the reward models
that use a template first turn such a string into ``[{"role": "user" | "assistant", "content"}]``.
"""

from __future__ import annotations

import re
from typing import Any

_TURN = re.compile(r"(?:^|\n)\s*(Human|Assistant):")
ROLES = {"Human": "user", "Assistant": "assistant"}


def is_hh_dialogue(text: Any) -> bool:
    """True for a string whose first non-blank words are ``Human:`` and that has an ``Assistant:`` turn."""
    return isinstance(text, str) and text.lstrip().startswith("Human:") and "Assistant:" in text


def hh_messages(text: str) -> list[dict[str, str]]:
    """The turns of an HH dialogue as messages; empty turns (the open ``Assistant:`` at the end of a
    prompt) are dropped, so a prompt ends with its last user turn."""
    parts = _TURN.split(text)
    messages = []
    for role, content in zip(parts[1::2], parts[2::2]):
        content = content.strip()
        if content:
            messages.append({"role": ROLES[role], "content": content})
    return messages
