"""The precision generation computes in: float32, or bfloat16 matmuls under ``torch.autocast``.

On a CPU with native bfloat16 (AVX512-BF16 or AMX: oneDNN's check) autocast generates SmolLM2-135M about
1.5 times faster than float32, and LoRA training (TrainingArguments ``bf16``) runs 1.4 times faster
(docs/hh_world.md "Cost"). Weights stay float32; only the matrix products run in bfloat16, so greedy
answers can differ from float32 ones in a rare near-tie. ``use_precision("bf16")`` makes every
:func:`pluralign.generation.batched.generate_batched` call inside it generate under autocast.
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


def bf16_native() -> bool:
    """True where bfloat16 is fast: a CUDA GPU that supports it, or a CPU with native bfloat16 instructions."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


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
