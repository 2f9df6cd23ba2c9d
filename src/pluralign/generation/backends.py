"""Generation backends, chosen by one option (``--generation_backend``) in ``train ric`` (online stage),
``evaluate`` and ``serve``.

- ``transformers``: :func:`pluralign.generation.batched.generate_batched` (length-sorted, left-padded batches of
  ``model.generate``). The default, and the fastest on a CPU.
- ``continuous``: transformers' continuous batching (``model.generate_batch``: paged KV cache, requests
  join and leave the running batch token by token, no padding). Meant for GPUs with many prompts of
  uneven length; benchmarks/scale.py measures both (``gen_tokens_per_s``). Never picked by itself.
- ``vllm``: a vLLM engine on the model folder, prefix caching on, LoRA adapters served as
  ``LoRARequest`` on their base model. Needs the ``vllm`` package and a CUDA GPU; ``import vllm``
  happens only here, when that backend is asked for.

``use_backend(name)`` makes every :func:`~pluralign.generation.batched.generate_batched` call inside it go
through that backend, so the policies' own ``generate`` (RiC's tags, MOSLIM's levels, soups' weight
averaging) keep steering while the backend does the decoding.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pluralign.errors import ConfigError

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


def vllm_available() -> bool:
    """True when the vllm package is importable and a CUDA GPU is visible."""
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


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


def generation_config(model, tokenizer, **generation_kwargs: Any):
    """A ``GenerationConfig`` from transformers' generation kwargs (greedy unless ``do_sample``)."""
    from transformers import GenerationConfig

    kwargs = {"max_new_tokens": 64, "do_sample": False, **generation_kwargs}
    if not kwargs.get("do_sample"):
        kwargs.pop("temperature", None)
        kwargs.pop("top_p", None)
    kwargs.setdefault("eos_token_id", tokenizer.eos_token_id)
    kwargs.setdefault("pad_token_id", tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    return GenerationConfig(**kwargs)


def continuous_generate(model, tokenizer, texts: Sequence[str], **generation_kwargs: Any) -> list[str]:
    """transformers' continuous batching over already rendered prompts; returns the new text per prompt."""
    import logging

    import torch

    if not hasattr(model, "generate_batch"):
        raise ConfigError(f"{type(model).__name__} has no continuous batching; use --generation_backend transformers")
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    # continuous batching has no prompt-length notion for begin_suppress_tokens (transformers 5.23 fails on
    # it): EOS-first responses come back empty here and the online stage's cleaning drops them
    generation_kwargs = {k: v for k, v in generation_kwargs.items() if k != "begin_suppress_tokens"}
    config = generation_config(model, tokenizer, **generation_kwargs)
    cb_logger = logging.getLogger("ContinuousBatchingLogger")
    level = cb_logger.level
    cb_logger.setLevel(logging.ERROR)  # its notes on defaults (no eos, cache sizing) are not the user's business
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            results = model.generate_batch(
                ids,
                generation_config=config,
                continuous_batching_config=_cpu_cache_config(ids, config.max_new_tokens, model),
                warmup=_on_gpu(model),  # warm-up captures CUDA graphs
                progress_bar=False,
            )
    finally:
        cb_logger.setLevel(level)
        model.train(was_training)
    outputs = list(results.values())
    if len(outputs) != len(texts) or any(o.error for o in outputs):
        failed = next((o.error for o in outputs if o.error), "missing results")
        raise RuntimeError(f"continuous batching failed: {failed}")
    return tokenizer.batch_decode([o.generated_tokens for o in outputs], skip_special_tokens=True)


def _on_gpu(model) -> bool:
    return next(model.parameters()).device.type == "cuda"


def _cpu_cache_config(ids: Sequence[Sequence[int]], max_new_tokens: int, model):
    """On a GPU transformers sizes the paged cache from free memory; on a CPU that would allocate a cache
    the size of the RAM, so it is sized to the workload: one page set per request."""
    if _on_gpu(model):
        return None
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    page = 64
    blocks = sum(-(-(len(i) + max_new_tokens) // page) for i in ids) + 1
    tokens = min(4096, sum(len(i) for i in ids) + len(ids))
    return ContinuousBatchingConfig(page_size=page, num_blocks=blocks, max_batch_tokens=tokens)


def to_sampling_kwargs(generation_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Translate transformers' generation kwargs to vLLM's ``SamplingParams`` (greedy unless sampling)."""
    gen = dict(generation_kwargs)
    out: dict[str, Any] = {"max_tokens": int(gen.pop("max_new_tokens", 64))}
    if gen.pop("do_sample", False):
        out["temperature"] = float(gen.pop("temperature", 1.0))
        if "top_p" in gen:
            out["top_p"] = float(gen.pop("top_p"))
        if "top_k" in gen:
            out["top_k"] = int(gen.pop("top_k"))
    else:
        out["temperature"] = 0.0
        gen.pop("temperature", None)
        gen.pop("top_p", None)
    unsupported = sorted(k for k in gen if k not in ("pad_token_id", "eos_token_id"))
    if unsupported:
        raise ConfigError(f"generation option {unsupported[0]!r} is not supported by the vllm backend")
    return out


def vllm_model_source(model_dir: str | Path) -> tuple[str, str | None]:
    """``(base model, adapter dir or None)``: a LoRA adapter folder is served on its base model."""
    adapter = Path(model_dir) / "adapter_config.json"
    if adapter.is_file():
        base = json.loads(adapter.read_text()).get("base_model_name_or_path")
        if not base:
            raise ConfigError(f"{adapter} names no base_model_name_or_path; vllm needs the base model")
        return str(base), str(model_dir)
    return str(model_dir), None


class VLLMGenerator:
    """A vLLM engine on a model folder (or a LoRA adapter's base model), with prefix caching.

    Not run on the machines this project is developed on (no GPU, vllm not installable): treat this
    path as untested until it has run on a GPU.
    """

    def __init__(self, model_dir: str | Path, gpu_memory_utilization: float = 0.85, **engine_kwargs: Any) -> None:
        try:
            from vllm import LLM  # guarded: only reached when the vllm backend is asked for
        except ImportError as exc:
            raise ConfigError("generation_backend 'vllm' needs the vllm package (pip install vllm) and a CUDA GPU") from exc

        base, self.adapter = vllm_model_source(model_dir)
        engine_kwargs.setdefault("enable_prefix_caching", True)  # every steered prompt shares its tag prefix
        if self.adapter:
            engine_kwargs.setdefault("enable_lora", True)
            rank = json.loads((Path(self.adapter) / "adapter_config.json").read_text()).get("r", 16)
            engine_kwargs.setdefault("max_lora_rank", max(16, int(rank)))
        self.engine = LLM(model=base, gpu_memory_utilization=gpu_memory_utilization, **engine_kwargs)

    def generate(self, texts: Sequence[str], **generation_kwargs: Any) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(**to_sampling_kwargs(generation_kwargs))
        extra = {}
        if self.adapter:
            from vllm.lora.request import LoRARequest

            extra["lora_request"] = LoRARequest("pluralign", 1, self.adapter)
        outputs = self.engine.generate(list(texts), params, use_tqdm=False, **extra)
        return [o.outputs[0].text for o in outputs]






