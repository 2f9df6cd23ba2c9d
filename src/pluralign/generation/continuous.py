"""The continuous-batching backend: transformers' ``generate_batch`` (paged KV cache; requests join and leave the
running batch token by token, no padding). Meant for GPUs with many prompts of uneven length."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pluralign.errors import ConfigError


def generation_config(model, tokenizer, **generation_kwargs: Any):
    """A ``GenerationConfig`` from transformers' generation kwargs (greedy unless ``do_sample``)."""
    from transformers import GenerationConfig

    kwargs = {"max_new_tokens": 64, "do_sample": False, **generation_kwargs}
    if not kwargs.get("do_sample"):
        for key in ("temperature", "top_p", "top_k"):
            kwargs.pop(key, None)
    kwargs.setdefault("eos_token_id", tokenizer.eos_token_id)
    kwargs.setdefault("pad_token_id", tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    return GenerationConfig(**kwargs)


def continuous_generate(model, tokenizer, ids: Sequence[Sequence[int]], **generation_kwargs: Any) -> list[str]:
    """transformers' continuous batching over tokenised prompts (``pluralign.models.sequences.prompt_ids``);
    returns the new text per prompt."""
    import logging

    import torch

    if not hasattr(model, "generate_batch"):
        raise ConfigError(f"{type(model).__name__} has no continuous batching; use --generation_backend transformers")
    ids = [list(i) for i in ids]
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
    if len(outputs) != len(ids) or any(o.error for o in outputs):
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
