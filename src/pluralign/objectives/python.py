"""An objective given as a Python callable ``module:function``.

The function takes ``(prompts, responses)`` (two lists of str; a conversational prompt arrives as its
``role: content`` lines) and returns one float per pair.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from pluralign.errors import ConfigError
from pluralign.objectives.base import Objective


def import_callable(spec: str):
    """Import ``module:function``; errors name the missing part."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"callable objective {spec!r} must be written module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module_name!r} for objective {spec!r}: {exc}") from exc
    fn = module
    for part in attr.split("."):
        if not hasattr(fn, part):
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r} (objective {spec!r})")
        fn = getattr(fn, part)
    if not callable(fn):
        raise ConfigError(f"{spec!r} is not callable; point at a function f(prompts, responses) -> list[float]")
    return fn


class CallableObjective(Objective):
    def __init__(self, name: str, function: str, batch_size: int = 64) -> None:
        self.name = name
        self.function = function
        self.fn = import_callable(function)
        self.batch_size = batch_size

    @property
    def identity(self) -> str:
        return f"callable:{self.function}"

    def score_batch(self, prompts: Sequence[Any], responses: Sequence[str]) -> list[float]:
        from pluralign.data.loading import prompt_text

        out = list(self.fn([prompt_text(p) for p in prompts], list(responses)))
        if len(out) != len(prompts):
            raise ValueError(
                f"objective {self.name!r}: {self.function} returned {len(out)} scores for {len(prompts)} pairs"
            )
        return [float(x) for x in out]
