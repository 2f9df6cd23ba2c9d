"""Reward tags in prompts (RiC, METHODS.md §1): formatting, insertion before the response marker.

The default renders ``<name> 0.5`` per objective, space-separated, inserted right before the assistant
turn marker when the prompt ends with it, or appended to the prompt otherwise. For conversational
prompts the tags are appended to the last user message (which is right before the assistant turn).

With ``position="response_start"`` the tags go right after the marker instead, on a line of their
own at the start of the assistant's turn (text prompts only): the response's first token is then
predicted right next to the tags.

With ``level_edges`` a tag shows the reward's quantile level among the training data instead (``0`` ..
``N-1`` for N levels, :func:`quantile_edges`): the same order as the z-score, but every tag value has
the same share of the training data and none carries a sign, which a small model ties to a style in
far fewer steps (docs/chat_world.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pluralign.errors import ConfigError


@dataclass
class TagTemplate:
    tag_format: str = "<{name}> {value:.1f}"
    separator: str = " "
    response_marker: str | None = "\n\nAssistant:"
    prefix: str = " "
    # per objective, the ascending z-score edges between quantile levels (None: tags show z-scores)
    level_edges: dict[str, list[float]] | None = None
    position: str = "prompt_end"  # prompt_end: before the response marker | response_start: after it

    def __post_init__(self) -> None:
        try:
            self.tag_format.format(name="x", value=0.0)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"tag_format {self.tag_format!r} is invalid; it may use only {{name}} and {{value}} (e.g. '<{{name}}> {{value:.1f}}')"
            ) from exc
        if "{value" not in self.tag_format:
            raise ConfigError(f"tag_format {self.tag_format!r} must contain {{value}}")
        if self.position not in TAG_POSITIONS:
            raise ConfigError(f"tag_position {self.position!r} is not one of {', '.join(TAG_POSITIONS)}")

    def render(self, names: Sequence[str], values: Sequence[float]) -> str:
        """The tags for z-scored ``values`` (shown as quantile levels when ``level_edges`` is set)."""
        if self.level_edges is not None:
            missing = [n for n in names if n not in self.level_edges]
            if missing:
                raise ConfigError(f"the tag template has no quantile levels for objective(s) {missing}")
            return self.separator.join(
                self.tag_format.format(name=n, value=level(self.level_edges[n], v)) for n, v in zip(names, values)
            )
        return self.separator.join(self._tag(n, _round(v)) for n, v in zip(names, values))

    def name_texts(self, names: Sequence[str]) -> list[str]:
        """Each objective's tag without its value ("<harmless>" for "<{name}> {value}"): text an answer
        never needs, which guided decoding bans (a copied tag line is the guided model's typical slip)."""
        texts = [re.sub(r"\{value[^}]*\}", "", self.tag_format).format(name=n).strip() for n in names]
        return [t for t in texts if t]

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
        if self.position == "response_start":
            if isinstance(prompt, list):
                raise ConfigError(
                    "tag_position response_start needs text prompts (chat template applied); "
                    "conversational prompts take tag_position prompt_end"
                )
            marker = self.response_marker
            return f"{prompt}{tags}\n" if marker and prompt.endswith(marker) else f"{prompt}{self.prefix}{tags}\n"
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


TAG_POSITIONS = ("prompt_end", "response_start")


def quantile_edges(values: Sequence[float], levels: int, field: str = "tag_levels") -> list[float]:
    """The ``levels - 1`` inner quantiles of ``values`` (e.g. deciles for 10): the edges between tag levels (or
    between a multi-head reward model's classes; ``field`` names the option in errors)."""
    v = np.asarray(values, dtype=float)
    if levels < 2:
        raise ConfigError(f"{field} must be at least 2, got {levels}")
    if v.size == 0 or not np.isfinite(v).all():
        raise ConfigError(f"quantile levels ({field}) need finite scores for every training sample")
    return [float(x) for x in np.quantile(v, np.arange(1, levels) / levels)]


def level(edges: Sequence[float], value: float) -> int:
    """The quantile level (0 .. len(edges)) of ``value``: how many edges it reaches."""
    return int(np.searchsorted(np.asarray(edges, dtype=float), float(value), side="right"))


def _round(value: float) -> float:
    # round like the training tags and avoid "-0.0"
    r = round(float(value), 1)
    return 0.0 if r == 0 else r


# the tags classifier-free guidance on RiC's tags contrasts the wanted ones with (pluralign.generation.guidance)
GUIDANCE_NEGATIVES = ("opposite", "neutral", "raised")


def negative_rewards(wanted: np.ndarray, low: np.ndarray, high: np.ndarray, against: str) -> np.ndarray:
    """The desired rewards of guidance's negative tags, per objective within [low, high]:

    - ``opposite``: every wanted reward mirrored (low + high - wanted); at a one-hot preference that pushes
      the other objective down as hard as the chosen one up;
    - ``raised``: only the rewards wanted above their middle mirrored, the others as wanted, so guidance
      raises what is asked for and pushes nothing down (for objectives that do not conflict at their low end);
    - ``neutral``: every reward at its middle.
    """
    wanted, low, high = (np.asarray(a, dtype=float) for a in (wanted, low, high))
    if against not in GUIDANCE_NEGATIVES:
        raise ConfigError(f"guidance_against {against!r} is not one of {', '.join(GUIDANCE_NEGATIVES)}")
    opposite = low + high - wanted
    if against == "opposite":
        return opposite
    if against == "raised":
        return np.minimum(wanted, opposite)
    return (low + high) / 2
