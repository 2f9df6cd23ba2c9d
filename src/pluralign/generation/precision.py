"""The precision generation computes in: float32, or bfloat16 matmuls under ``torch.autocast``.

Weights stay float32; only the matrix products run in bfloat16. On this project's CPU (native bfloat16,
AVX512-BF16) that generates SmolLM2-135M about 1.5 times faster and trains its LoRA (TrainingArguments
``bf16``) about 1.4 times faster than float32, measured side by side (docs/hh_world.md "bfloat16"). A model
trained and decoded in bfloat16 is another draw, not the float32 model faster: the chat worlds keep
float32 by default. ``use_precision("bf16")`` makes every :func:`pluralign.generation.batched.generate_batched`
call inside it generate under autocast.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import torch

from pluralign.errors import ConfigError

PRECISIONS = ("fp32", "bf16")
_CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("pluralign_generation_precision", default="fp32")


@contextlib.contextmanager
def use_precision(name: str) -> Iterator[None]:
    """Generate in ``name`` (fp32 | bf16) inside this block."""
    if name not in PRECISIONS:
        raise ConfigError(f"precision {name!r} is not one of {', '.join(PRECISIONS)}")
    token = _CURRENT.set(name)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def generation_autocast(device: Any) -> contextlib.AbstractContextManager:
    """The autocast context for one generate call on ``device`` under the current precision."""
    if _CURRENT.get() != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
