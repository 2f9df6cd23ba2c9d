"""Reward tags in prompts (RiC, METHODS.md §1): formatting, insertion before the response marker.

The default renders ``<name> 0.5`` per objective, space-separated, inserted right before the assistant
turn marker when the prompt ends with it, or appended to the prompt otherwise. For conversational
prompts the tags are appended to the last user message (which is right before the assistant turn).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pluralign.errors import ConfigError


@dataclass
class TagTemplate:
    tag_format: str = "<{name}> {value:.1f}"
    separator: str = " "
    response_marker: str | None = "\n\nAssistant:"
    prefix: str = " "

    def __post_init__(self) -> None:
        try:
            self.tag_format.format(name="x", value=0.0)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"tag_format {self.tag_format!r} is invalid; it may use only {{name}} and {{value}} (e.g. '<{{name}}> {{value:.1f}}')"
            ) from exc
        if "{value" not in self.tag_format:
            raise ConfigError(f"tag_format {self.tag_format!r} must contain {{value}}")

    def render(self, names: Sequence[str], values: Sequence[float]) -> str:
        return self.separator.join(self._tag(n, _round(v)) for n, v in zip(names, values))

    def _tag(self, name: str, value: float) -> str:
        """One tag; a value the format shows as zero never carries a sign ("-0" and "0" would be two tags)."""
        text = self.tag_format.format(name=name, value=value)
        if value < 0 and text == self.tag_format.format(name=name, value=-0.0):
            return self.tag_format.format(name=name, value=0.0)
        return text

    def apply(self, prompt: Any, names: Sequence[str], values: Sequence[float] | None) -> Any:
        """Return ``prompt`` with tags for ``values`` inserted (``values=None``: prompt unchanged)."""
        if values is None:
            return prompt
        tags = self.render(names, values)
        if isinstance(prompt, list):  # conversational
            msgs = [dict(m) for m in prompt]
            for m in reversed(msgs):
                if m.get("role") == "user":
                    m["content"] = f"{m['content']}{self.prefix}{tags}"
                    return msgs
            return [*msgs, {"role": "user", "content": tags}]
        marker = self.response_marker
        if marker and prompt.endswith(marker):
            return f"{prompt[: -len(marker)]}{self.prefix}{tags}{marker}"
        return f"{prompt}{self.prefix}{tags}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _round(value: float) -> float:
    # round like the training tags and avoid "-0.0"
    r = round(float(value), 1)
    return 0.0 if r == 0 else r
