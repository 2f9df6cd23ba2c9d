"""MOSLIM's preference-in-prompt template: the wanted intensity per objective, written as plain text.

A template is a format string with one ``{objective}`` slot per objective, e.g. the default
``" [sentiment={sentiment} conciseness={conciseness}]"``; a slot renders as ``level_format``
(``"3/4"``: level 3 of a 0-4 scale), or as a word from ``level_names`` (e.g. ``["awful", "fine", "great"]``
for a 3-class head: words a small pretrained LM already knows are easier to follow than digits), or as
``unspecified`` (``"any"``) when the objective is masked out.
The block is inserted right before the response marker when the prompt ends with one, else appended
(conversational prompts: appended to the last user message). :meth:`PreferenceTemplate.parse` reads the
targets back and removes the block, so the reward is a function of the visible prompt alone and works
with every TRL trainer (GRPO, RLOO, online DPO) without extra dataset columns.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pluralign.errors import ConfigError


def default_template(objectives: Sequence[str]) -> str:
    return " [" + " ".join(f"{n}={{{n}}}" for n in objectives) + "]"


def _fields(fmt: str, what: str) -> list[tuple[str, str | None]]:
    try:
        return [(lit, name) for lit, name, _, _ in string.Formatter().parse(fmt)]
    except ValueError as exc:
        raise ConfigError(f"{what} {fmt!r} is not a valid format string: {exc}") from exc


@dataclass
class PreferenceTemplate:
    objectives: list[str]
    num_classes: list[int]
    template: str | None = None
    level_format: str = "{level}/{max}"
    unspecified: str = "any"
    response_marker: str | None = "\n\nAssistant:"
    level_names: dict[str, list[str]] | None = None
    _pattern: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.objectives = list(self.objectives)
        self.num_classes = [int(k) for k in self.num_classes]
        if len(self.objectives) != len(self.num_classes):
            raise ConfigError("the template needs one class count per objective")
        if self.template is None:
            self.template = default_template(self.objectives)
        level_fields = [n for _, n in _fields(self.level_format, "level_format") if n is not None]
        if "level" not in level_fields or set(level_fields) - {"level", "max"}:
            raise ConfigError(
                f"level_format {self.level_format!r} must contain {{level}} and may use only {{level}} and {{max}}"
            )
        if not self.unspecified:
            raise ConfigError("unspecified must be a non-empty word, e.g. 'any'")
        for name, words in (self.level_names or {}).items():
            if name not in self.objectives:
                raise ConfigError(f"level_names has an entry for {name!r}, which is not an objective {self.objectives}")
            k = self.num_classes[self.objectives.index(name)]
            if len(words) != k or len(set(words)) != k or self.unspecified in words or not all(words):
                raise ConfigError(
                    f"level_names[{name!r}] must hold {k} distinct non-empty words (one per class), other than {self.unspecified!r}"
                )
        slots = [n for _, n in _fields(self.template, "template") if n is not None]
        for name in self.objectives:
            if name not in slots:
                raise ConfigError(
                    f"template {self.template!r} has no slot for objective {name!r}; add {{{name}}} where its intensity goes"
                )
        unknown = [s for s in slots if s not in self.objectives]
        if unknown:
            raise ConfigError(
                f"template slot {{{unknown[0]}}} is not an objective; the objectives are {self.objectives}"
            )
        twice = [s for s in self.objectives if slots.count(s) > 1]
        if twice:
            raise ConfigError(f"template has the slot {{{twice[0]}}} twice; give each objective one slot")
        self._pattern = self._compile()

    def _compile(self) -> re.Pattern:
        level_re = ""
        for lit, name in _fields(self.level_format, "level_format"):
            level_re += re.escape(lit)
            if name is not None:
                level_re += "{LEVEL}" if name == "level" else r"\d+"
        regex = ""
        for lit, name in _fields(self.template, "template"):
            regex += re.escape(lit)
            if name is not None:
                i = self.objectives.index(name)
                words = (self.level_names or {}).get(name)
                if words:
                    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
                    level = f"(?P<w{i}>{alternatives})"
                else:
                    level = level_re.replace("{LEVEL}", f"(?P<l{i}>\\d+)")
                regex += f"(?:{level}|(?P<u{i}>{re.escape(self.unspecified)}))"
        return re.compile(regex)

    def render(self, targets: Sequence[int | None]) -> str:
        """The block for ``targets`` (one level per objective in objective order, None = unspecified)."""
        if len(targets) != len(self.objectives):
            raise ConfigError(f"got {len(targets)} targets for {len(self.objectives)} objectives")
        values = {}
        for name, k, t in zip(self.objectives, self.num_classes, targets):
            if t is None:
                values[name] = self.unspecified
                continue
            if not 0 <= int(t) < k:
                raise ConfigError(f"intensity {t} for objective {name!r} is outside 0..{k - 1}")
            words = (self.level_names or {}).get(name)
            values[name] = words[int(t)] if words else self.level_format.format(level=int(t), max=k - 1)
        return self.template.format(**values)

    def apply(self, prompt: Any, targets: Sequence[int | None]) -> Any:
        """``prompt`` with the preference block for ``targets`` inserted."""
        block = self.render(targets)
        if isinstance(prompt, list):
            msgs = [dict(m) for m in prompt]
            for m in reversed(msgs):
                if m.get("role") == "user":
                    m["content"] = f"{m['content']}{block}"
                    return msgs
            return [*msgs, {"role": "user", "content": block.strip()}]
        marker = self.response_marker
        if marker and prompt.endswith(marker):
            return f"{prompt[: -len(marker)]}{block}{marker}"
        return f"{prompt}{block}"

    def parse(self, prompt: Any) -> tuple[Any, list[int | None]]:
        """``(prompt without the block, targets)``; a prompt without a block gives all-None targets."""
        if isinstance(prompt, list):
            msgs = [dict(m) for m in prompt]
            for m in reversed(msgs):
                if m.get("role") == "user":
                    m["content"], targets = self.parse(m["content"])
                    return msgs, targets
            return msgs, [None] * len(self.objectives)
        matches = list(self._pattern.finditer(prompt))
        if not matches:
            return prompt, [None] * len(self.objectives)
        m = matches[-1]
        targets: list[int | None] = []
        for i, name in enumerate(self.objectives):
            words = (self.level_names or {}).get(name)
            if words:
                word = m.group(f"w{i}")
                targets.append(words.index(word) if word is not None else None)
            else:
                level = m.group(f"l{i}")
                targets.append(int(level) if level is not None else None)
        return prompt[: m.start()] + prompt[m.end() :], targets

    def to_dict(self) -> dict[str, Any]:
        return {
            "objectives": self.objectives,
            "num_classes": self.num_classes,
            "template": self.template,
            "level_format": self.level_format,
            "unspecified": self.unspecified,
            "response_marker": self.response_marker,
            "level_names": self.level_names,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreferenceTemplate:
        return cls(**data)
