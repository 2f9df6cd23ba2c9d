"""Which generation backend runs, chosen by one option (``--generation_backend``) in ``train ric`` (online
stage), ``evaluate`` and ``serve``.

- ``transformers``: :func:`pluralign.generation.batched.generate_batched` (length-sorted, left-padded batches of
  ``model.generate``). The default, and the fastest on a CPU.
- ``continuous``: transformers' continuous batching (:mod:`pluralign.generation.continuous`). Meant for GPUs
  with many prompts of uneven length; benchmarks/scale.py measures both (``gen_tokens_per_s``). Never
  picked by itself.
- ``vllm``: a vLLM engine (:mod:`pluralign.generation.vllm`). Needs the ``vllm`` package and a CUDA GPU.

``use_backend(name)`` makes every :func:`~pluralign.generation.batched.generate_batched` call inside it go
through that backend, so the policies' own ``generate`` (RiC's tags, MOSLIM's levels, soups' weight
averaging) keep steering while the backend does the decoding.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from pluralign.errors import ConfigError
from pluralign.generation.vllm import vllm_available

BACKENDS = ("transformers", "continuous", "vllm")
_CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("pluralign_generation_backend", default="transformers")


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ConfigError(f"generation_backend {name!r} is unknown; use one of {', '.join(BACKENDS)}")
    if name == "vllm" and not vllm_available():
        raise ConfigError(
            "generation_backend 'vllm' needs the vllm package and a CUDA GPU (pip install vllm); "
            "use --generation_backend transformers"
        )
    return name




def current_backend() -> str:
    return _CURRENT.get()


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Route :func:`pluralign.generation.batched.generate_batched` calls in this block through backend ``name``."""
    token = _CURRENT.set(check_backend(name))
    try:
        yield
    finally:
        _CURRENT.reset(token)




















