"""Batched generation for causal LMs: left padding, length-sorted batches, outputs in input order.

Every method and the evaluator generate through :func:`generate_batched`; RiC's reference code generated
one prompt at a time, which is several times slower (benchmarks/generation_throughput.py). Responses are
cleaned (:mod:`pluralign.generation.cleaning`: cut at the next turn, no EOS as first token) unless ``cleaning`` is off.
Every backend tokenises a prompt the way training did (:func:`pluralign.models.sequences.token_ids`: one BOS
where the tokenizer uses one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from pluralign.errors import ConfigError
from pluralign.generation.backends import check_backend, use_backend
from pluralign.generation.cleaning import (
    DEFAULT as DEFAULT_CLEANING,
    Cleaning,
    clean_text,
    end_of_turn_ids,
    generation_overrides,
    truncate_ids,
)
from pluralign.generation.precision import generation_autocast
from pluralign.generation.prompt_copy import PromptCopyBan, check_ngram_size
from pluralign.generation.prompts import render_prompt
from pluralign.generation.vllm import VLLMEngines, shared_engines
from pluralign.models.sequences import prompt_ids

DEFAULT_GENERATION = {"max_new_tokens": 64, "do_sample": False}
OnToken = Callable[[int, int], "bool | None"]


class RowTokens:
    """A stopping criterion that hands each row's new token to ``on_token(prompt index, token id)`` as it is
    generated, and ends a row once it says so (its text is final, or its client left) or an end-of-turn
    token comes: streaming for every row of a padded batch."""

    def __init__(self, rows: Sequence[int], on_token: OnToken, stop_ids: Sequence[int], device: Any) -> None:
        self.rows, self.on_token, self.stop_ids = list(rows), on_token, {int(i) for i in stop_ids}
        self.done = torch.zeros(len(self.rows), dtype=torch.bool, device=device)

    def __call__(self, input_ids: torch.Tensor, scores: Any = None, **kwargs: Any) -> torch.Tensor:
        last = input_ids[:, -1].tolist()
        for j, token in enumerate(last):
            if self.done[j]:
                continue
            if token in self.stop_ids or self.on_token(self.rows[j], int(token)):
                self.done[j] = True
        return self.done.clone()


def left_padded(rows: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` of id rows padded on the left to the longest."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(list(r), dtype=torch.long)
            mask[i, width - len(r) :] = 1
    return {"input_ids": ids, "attention_mask": mask}


def sampling_warpers(model: Any, call: dict[str, Any]) -> list[Any]:
    """Temperature, top-k and top-p as processors that run after guidance: transformers places a custom
    processor after its own warpers, so guided sampling takes them out of ``call`` and applies them itself."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    if not call.get("do_sample"):
        return []
    config = model.generation_config

    def setting(name: str, off: float) -> float:  # the call's value, else the model's, else off
        value = call.pop(name) if name in call else getattr(config, name, None)
        return off if value is None else value

    temperature, top_k, top_p = setting("temperature", 1.0), setting("top_k", 0), setting("top_p", 1.0)
    call.update(temperature=1.0, top_k=0, top_p=1.0)
    warpers: list[Any] = [TemperatureLogitsWarper(float(temperature))] if temperature != 1.0 else []
    warpers += [TopKLogitsWarper(int(top_k))] if top_k > 0 else []
    warpers += [TopPLogitsWarper(float(top_p))] if top_p < 1.0 else []
    return warpers


@torch.no_grad()
def generate_batched(
    model,
    tokenizer,
    prompts: Sequence[Any],
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
    cleaning: Cleaning | None = None,
    on_token: OnToken | None = None,
    row_context: Callable[[list[int]], Any] | None = None,
    negatives: Sequence[Any] | None = None,
    guidance_scale: float = 1.0,
    **generation_kwargs: Any,
) -> list[str]:
    """Generate one completion per prompt; returns only the new text (special tokens removed), cleaned.

    ``on_token(i, token_id)`` sees prompt ``i``'s tokens as they are generated (end-of-turn tokens
    excluded); returning True ends that row. ``row_context(indices)`` is entered around the generate
    call of each padded batch (indices into ``prompts``), e.g. a LoRA mix's per-row weights.
    ``negatives`` (one per prompt) with ``guidance_scale`` > 1 decodes with classifier-free guidance
    away from them (:mod:`pluralign.generation.guidance`). ``prompt_no_repeat_ngram_size=n`` keeps each
    response from repeating n consecutive tokens of its own prompt (:mod:`pluralign.generation.prompt_copy`).
    Inside ``pluralign.generation.backends.use_backend("continuous")`` it runs through transformers'
    continuous batching instead of padded batches (tokens are then not streamed).
    """
    from pluralign.generation.backends import current_backend
    from pluralign.generation.continuous import continuous_generate

    cleaning = cleaning or DEFAULT_CLEANING
    texts = [render_prompt(tokenizer, p) for p in prompts]
    kwargs = {**DEFAULT_GENERATION, **generation_overrides(tokenizer, cleaning), **generation_kwargs}
    no_copy = kwargs.pop("prompt_no_repeat_ngram_size", None) or 0
    if no_copy:
        check_ngram_size(no_copy)
    stop_ids = end_of_turn_ids(tokenizer) if cleaning.enabled else []
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    ids = prompt_ids(tokenizer, texts)
    guided = negatives is not None and guidance_scale != 1.0
    if guided and len(negatives) != len(prompts):
        raise ConfigError(f"negatives: give one negative prompt per prompt ({len(negatives)} for {len(prompts)})")
    negative_ids = prompt_ids(tokenizer, [render_prompt(tokenizer, p) for p in negatives]) if guided else []
    if current_backend() == "continuous":
        if row_context is not None:
            raise ConfigError("a per-row LoRA mix cannot run through continuous batching's packed batches")
        if guided or no_copy:
            what = "guidance_scale: guided decoding" if guided else "prompt_no_repeat_ngram_size: the prompt-copy ban"
            raise ConfigError(f"{what} runs in padded batches; use the transformers backend")
        out = [clean_text(t, cleaning) for t in continuous_generate(model, tokenizer, ids, **kwargs)]
        if progress:
            progress(len(texts), len(texts))
        return out
    kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
    order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
    out: list[str] = [""] * len(texts)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = {k: v.to(device) for k, v in left_padded([ids[i] for i in idx], tokenizer.pad_token_id).items()}
            call = dict(kwargs)
            if on_token is not None:
                from transformers import StoppingCriteriaList

                stop = RowTokens(idx, on_token, end_of_turn_ids(tokenizer) if cleaning.enabled else [], device)
                call["stopping_criteria"] = StoppingCriteriaList([stop])
            processors: list[Any] = []
            if no_copy:  # first: guidance then only weighs the tokens left allowed
                processors.append(PromptCopyBan([ids[i] for i in idx], enc["input_ids"].shape[1], no_copy))
            if guided:
                from pluralign.generation.guidance import NegativePromptGuidance, differing_tokens

                neg = left_padded([negative_ids[i] for i in idx], tokenizer.pad_token_id)
                vocab = model.get_output_embeddings().weight.shape[0]
                guide = NegativePromptGuidance(
                    model,
                    neg["input_ids"].to(device),
                    neg["attention_mask"].to(device),
                    guidance_scale,
                    unpromoted=differing_tokens([ids[i] for i in idx], [negative_ids[i] for i in idx], vocab).to(device),
                )
                processors += [guide, *sampling_warpers(model, call)]
            if processors:
                from transformers import LogitsProcessorList

                call["logits_processor"] = LogitsProcessorList(processors)
            context = row_context(idx) if row_context is not None else contextlib.nullcontext()
            with context, generation_autocast(device):
                seqs = model.generate(**enc, **call)
            new = seqs[:, enc["input_ids"].shape[1] :]
            if stop_ids:
                new = truncate_ids(new.tolist(), stop_ids)
            for i, row in zip(idx, tokenizer.batch_decode(new, skip_special_tokens=True)):
                out[i] = clean_text(row, cleaning)
            if progress:
                progress(min(start + batch_size, len(order)), len(order))
    finally:
        model.train(was_training)
    return out


def generate_texts(
    backend: str,
    model,
    tokenizer,
    prompts: Sequence[Any],
    model_dir: str | Path | None = None,
    batch_size: int = 16,
    cleaning=None,
    engines: VLLMEngines | None = None,
    **generation_kwargs: Any,
) -> list[str]:
    """One completion per prompt with ``backend``, cleaned (``pluralign.generation.cleaning``; default on);
    ``model_dir`` (the folder ``model`` came from) is what vllm loads, on an engine of ``engines`` (default:
    the process's), so that calls chunk after chunk reuse one engine. Plain and conversational prompts
    are rendered as by ``generate_batched``."""
    check_backend(backend)
    if backend == "vllm":
        if model_dir is None:
            raise ConfigError("the vllm backend needs the model's folder")
        texts = [render_prompt(tokenizer, p) for p in prompts]
        outs = (engines or shared_engines()).generator(model_dir).generate(prompt_ids(tokenizer, texts), **generation_kwargs)
        return [clean_text(t, cleaning or DEFAULT_CLEANING) for t in outs]
    with use_backend(backend):
        return generate_batched(model, tokenizer, prompts, batch_size=batch_size, cleaning=cleaning, **generation_kwargs)
