"""Continuous batching on padded KV caches: a request joins the running batch at the next decode step.

:class:`StepwiseDecoder` keeps one batch of rows decoding, one token per row per :meth:`~StepwiseDecoder.step`.
A new request is prefilled on its own and its KV cache is left-padded and stacked onto the running
batch's, so it starts decoding at the next step instead of waiting for the batch to end; a row that
ends (an end-of-turn token, its final text, its token budget, a cancelled request) leaves at once and
its slot goes to the next waiting request. Positions follow each row's own tokens (padding is masked
out), so a row decodes as it would alone, as ``model.generate`` does with left padding.

Each request brings its own settings (``max_new_tokens``, greedy or sampled, temperature, top-p) and, on
a LoRA bank (:class:`pluralign.generation.lora_mix.LoRAMix`), its own mix: weights applied inside the LoRA
layers (``adapter_weights``), or K rows, one per adapter, whose log-probabilities are mixed
(``logit_weights``, MOD). Tokens go out through each request's ``on_token`` as they are chosen, which is
what streaming servers need; :func:`decode_texts` runs a list of prompts to the end.

It works for decoder-only models whose KV cache is transformers' plain ``DynamicCache`` (GPT-2, Llama,
SmolLM2, Qwen2, ...); a model with sliding-window or other cache layers is refused with a clear error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from pluralign.errors import ConfigError
from pluralign.generation.lora_mix import LoRAMix, mix_logprobs, one_hot
from pluralign.models.sequences import token_ids


@dataclass(eq=False)
class DecodeRequest:
    """One prompt to decode, with its settings, steering and callbacks.

    ``on_token(token_id) -> bool`` gets every generated token (end-of-turn tokens excluded); returning
    True ends the request (its text is final). ``on_end(reason, error)`` is called once, with reason
    ``stop`` (end of turn or final text), ``length`` (``max_new_tokens`` reached), ``cancelled`` or ``error``.
    """

    input_ids: Sequence[int]
    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    suppress_first: Sequence[int] = ()
    stop_ids: Sequence[int] = ()
    adapter_weights: Sequence[float] | None = None
    logit_weights: Sequence[float] | None = None
    on_token: Callable[[int], bool | None] | None = None
    on_end: Callable[[str, BaseException | None], None] | None = None
    generated: list[int] = field(default_factory=list)
    cancelled: bool = False
    finish_reason: str | None = None
    error: BaseException | None = None

    def cancel(self) -> None:
        """Ask the decoder to drop this request at its next step (safe from any thread)."""
        self.cancelled = True

    @property
    def copies(self) -> int:
        return len(self.logit_weights) if self.logit_weights is not None else 1


def _left_pad(t: torch.Tensor, n: int) -> torch.Tensor:
    if n <= 0:
        return t
    shape = list(t.shape)
    shape[-2] = n
    return torch.cat([t.new_zeros(shape), t], dim=-2)


def _pad_mask(mask: torch.Tensor, length: int) -> torch.Tensor:
    """``[rows, L]`` attention mask left-padded with zeros to ``length`` columns."""
    n = length - mask.shape[1]
    return mask if n <= 0 else torch.cat([mask.new_zeros(mask.shape[0], n), mask], dim=1)


def _cache_of(outputs: Any) -> Any:
    cache = getattr(outputs, "cache", None)
    return cache if cache is not None else outputs.past_key_values


def _check_cache(cache: Any) -> None:
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if layers is None or any(type(layer) is not DynamicLayer for layer in layers):
        raise ConfigError(
            "this model's KV cache is not a plain DynamicCache (sliding window, linear attention, ...); "
            "serve it with --backend transformers"
        )


class StepwiseDecoder:
    """Decodes a changing batch of requests on one model, one token per row per :meth:`step`.

    ``add`` may be called from any thread; ``step`` from one thread only. ``max_rows`` bounds the batch
    (a MOD request takes one row per adapter); requests beyond it wait for a free slot.
    """

    def __init__(self, model: Any, pad_token_id: int, mix: LoRAMix | None = None, max_rows: int = 64) -> None:
        self.model = model
        self.mix = mix
        self.pad_token_id = int(pad_token_id)
        self.max_rows = max(1, max_rows)
        self.device = next(model.parameters()).device
        self._lock = threading.Lock()
        self._pending: list[DecodeRequest] = []
        self._wake = threading.Event()
        self.requests: list[DecodeRequest] = []  # running, in row order
        self.cache: Any = None
        self.mask: torch.Tensor | None = None  # [rows, cache length], 1 = real token
        self.positions: torch.Tensor | None = None  # [rows] position of the next token
        self.last: torch.Tensor | None = None  # [rows] the token fed at the next step
        self.steps = 0
        self.prefills = 0

    # --- requests -----------------------------------------------------------------------------

    def add(self, request: DecodeRequest) -> DecodeRequest:
        """Queue ``request``; it joins the running batch at the next step that has room."""
        if request.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if (request.adapter_weights is not None or request.logit_weights is not None) and self.mix is None:
            raise ConfigError("mix weights need a LoRA bank (this model has no LoRA mix)")
        if request.copies > self.max_rows:
            raise ConfigError(f"a request needs {request.copies} rows; this decoder has {self.max_rows}")
        with self._lock:
            self._pending.append(request)
        self._wake.set()
        return request

    @property
    def rows(self) -> int:
        return 0 if self.last is None else int(self.last.shape[0])

    def busy(self) -> bool:
        """True while a request is running or waiting."""
        with self._lock:
            return bool(self._pending) or bool(self.requests)

    def wait_for_work(self, timeout: float | None = None) -> bool:
        """Block until a request is queued (or ``timeout``); True when there is work."""
        if self.busy():
            return True
        self._wake.clear()
        if self.busy():
            return True
        self._wake.wait(timeout)
        return self.busy()

    # --- one step ----------------------------------------------------------------------------

    @torch.no_grad()
    def step(self) -> bool:
        """Drop ended rows, decode one token for every running row, admit waiting requests (their first
        token comes from their prefill). Returns True while work remains."""
        try:
            self._drop([r for r in self.requests if r.cancelled], "cancelled")
            if self.requests:
                self._decode()
            self._admit()
        except Exception as exc:  # every running request gets the error; the decoder starts over
            self._fail_all(exc)
        return self.busy()

    def run(self, requests: Sequence[DecodeRequest]) -> None:
        """Decode ``requests`` to the end (in this thread)."""
        for r in requests:
            self.add(r)
        while self.step():
            pass

    def _row_weights(self, requests: Sequence[DecodeRequest]) -> torch.Tensor | None:
        if self.mix is None:
            return None
        k = len(self.mix.adapters)
        rows: list[Sequence[float]] = []
        for r in requests:
            if r.logit_weights is not None:
                rows.extend(one_hot(k, i) for i in range(k))
            elif r.adapter_weights is not None:
                rows.append(tuple(r.adapter_weights))
            else:
                rows.append((0.0,) * k)  # the base model
        return torch.tensor(rows, dtype=torch.float32)

    def _forward(self, requests: Sequence[DecodeRequest], **inputs: Any) -> Any:
        weights = self._row_weights(requests)
        if weights is None:
            return self.model(**inputs, use_cache=True)
        with self.mix.rows(weights):
            return self.model(**inputs, use_cache=True)

    def _decode(self) -> None:
        mask = torch.cat([self.mask, self.mask.new_ones(self.rows, 1)], dim=1)
        out = self._forward(
            self.requests,
            input_ids=self.last[:, None],
            attention_mask=mask,
            position_ids=self.positions[:, None],
            cache=self.cache,
        )
        self.cache, self.mask = _cache_of(out), mask
        self.positions = self.positions + 1
        self.steps += 1
        tokens = self._choose(self.requests, out.logits[:, -1], first=False)
        self._deliver(self.requests, tokens)

    def _admit(self) -> None:
        with self._lock:
            room = self.max_rows - self.rows
            new: list[DecodeRequest] = []
            while self._pending and self._pending[0].copies <= room:
                r = self._pending.pop(0)
                if r.cancelled:
                    self._end(r, "cancelled")
                    continue
                new.append(r)
                room -= r.copies
        if not new:
            return
        ids = [list(r.input_ids) for r in new for _ in range(r.copies)]
        width = max(len(i) for i in ids)
        input_ids = torch.full((len(ids), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for j, row in enumerate(ids):
            input_ids[j, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[j, width - len(row) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        input_ids, mask, positions = input_ids.to(self.device), mask.to(self.device), positions.to(self.device)
        out = self._forward(new, input_ids=input_ids, attention_mask=mask, position_ids=positions)
        _check_cache(_cache_of(out))
        self.prefills += 1
        tokens = self._choose(new, out.logits[:, -1], first=True)
        self._merge(new, _cache_of(out), mask, positions[:, -1] + 1)
        self._deliver(new, tokens, rows_from=self.rows - len(ids))

    # --- token choice ------------------------------------------------------------------------

    def _choose(self, requests: Sequence[DecodeRequest], logits: torch.Tensor, first: bool) -> list[int]:
        """One token per request from its rows' last logits (MOD requests: their K rows mixed)."""
        logits = logits.float()
        if all(r.logit_weights is None for r in requests):
            scores = logits
        else:
            parts, at = [], 0
            for r in requests:
                block = logits[at : at + r.copies]
                if r.logit_weights is None:
                    parts.append(block)
                else:
                    w = torch.tensor([list(r.logit_weights)], dtype=torch.float32, device=block.device)
                    parts.append(mix_logprobs(block, w))
                at += r.copies
            scores = torch.cat(parts, dim=0)
        if first:
            for j, r in enumerate(requests):
                if r.suppress_first:
                    scores[j, list(r.suppress_first)] = float("-inf")
        tokens = scores.argmax(dim=-1).tolist()
        for j, r in enumerate(requests):
            if r.do_sample:
                tokens[j] = _sample(scores[j], r)
        return tokens

    # --- rows in and out ----------------------------------------------------------------------

    def _deliver(self, requests: Sequence[DecodeRequest], tokens: Sequence[int], rows_from: int = 0) -> None:
        """Feed each request its token; the rows of requests that ended leave the batch."""
        ended: list[tuple[DecodeRequest, str]] = []
        for r, t in zip(requests, tokens):
            if r.cancelled:
                ended.append((r, "cancelled"))
                continue
            if t in r.stop_ids:
                ended.append((r, "stop"))
                continue
            r.generated.append(int(t))
            final = bool(r.on_token(int(t))) if r.on_token is not None else False
            if final:
                ended.append((r, "stop"))
            elif len(r.generated) >= r.max_new_tokens:
                ended.append((r, "length"))
        # every row of a request (MOD: K rows) takes the request's token
        feed = [t for r, t in zip(requests, tokens) for _ in range(r.copies)]
        self.last[rows_from : rows_from + len(feed)] = torch.tensor(feed, dtype=torch.long, device=self.device)
        for r, reason in ended:
            self._drop([r], reason)

    def _merge(self, new: Sequence[DecodeRequest], cache: Any, mask: torch.Tensor, positions: torch.Tensor) -> None:
        rows = sum(r.copies for r in new)
        last = torch.full((rows,), self.pad_token_id, dtype=torch.long, device=self.device)
        if self.cache is None or not self.requests:
            self.cache, self.mask, self.positions, self.last = cache, mask, positions, last
            self.requests = list(new)
            return
        length = max(self.mask.shape[1], mask.shape[1])
        for old_layer, new_layer in zip(self.cache.layers, cache.layers):
            pad_old, pad_new = length - self.mask.shape[1], length - mask.shape[1]
            old_layer.keys = torch.cat([_left_pad(old_layer.keys, pad_old), _left_pad(new_layer.keys, pad_new)], dim=0)
            old_layer.values = torch.cat(
                [_left_pad(old_layer.values, pad_old), _left_pad(new_layer.values, pad_new)], dim=0
            )
        self.mask = torch.cat([_pad_mask(self.mask, length), _pad_mask(mask, length)], dim=0)
        self.positions = torch.cat([self.positions, positions])
        self.last = torch.cat([self.last, last])
        self.requests = self.requests + list(new)

    def _drop(self, gone: Sequence[DecodeRequest], reason: str) -> None:
        if not gone:
            return
        gone_ids = {id(r) for r in gone}
        keep_rows, keep, at = [], [], 0
        for r in self.requests:
            if id(r) not in gone_ids:
                keep.append(r)
                keep_rows.extend(range(at, at + r.copies))
            at += r.copies
        for r in gone:
            self._end(r, reason)
        if not keep:
            self.requests, self.cache, self.mask, self.positions, self.last = [], None, None, None, None
            return
        index = torch.tensor(keep_rows, dtype=torch.long, device=self.device)
        self.mask, self.positions, self.last = self.mask[index], self.positions[index], self.last[index]
        start = int((self.mask.sum(0) > 0).nonzero()[0])  # columns that are padding in every row go
        self.mask = self.mask[:, start:]
        for layer in self.cache.layers:
            layer.keys = layer.keys[index, :, start:]
            layer.values = layer.values[index, :, start:]
        self.requests = keep

    def _end(self, request: DecodeRequest, reason: str, error: BaseException | None = None) -> None:
        if request.finish_reason is not None:
            return
        request.finish_reason, request.error = reason, error
        if request.on_end is not None:
            request.on_end(reason, error)

    def _fail_all(self, exc: BaseException) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for r in self.requests + pending:
            self._end(r, "error", exc)
        self.requests, self.cache, self.mask, self.positions, self.last = [], None, None, None, None


def _sample(scores: torch.Tensor, r: DecodeRequest) -> int:
    """One sampled token from a row's scores with its temperature, top-k and top-p."""
    scores = scores / max(float(r.temperature), 1e-5)
    if r.top_k and r.top_k > 0:
        kth = torch.topk(scores, min(r.top_k, scores.shape[-1])).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if r.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=True)
        cumulative = torch.softmax(sorted_scores, dim=-1).cumsum(-1)
        drop = cumulative - torch.softmax(sorted_scores, dim=-1) > r.top_p
        scores = scores.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return int(torch.multinomial(torch.softmax(scores, dim=-1), 1))


def request_settings(generation_kwargs: dict[str, Any], model: Any = None) -> dict[str, Any]:
    """:class:`DecodeRequest` fields from ``generate``-style kwargs (``max_new_tokens``, ``do_sample``,
    ``temperature``, ``top_p``, ``top_k``, ``begin_suppress_tokens``); other keys are refused."""
    known = {"max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "begin_suppress_tokens", "pad_token_id"}
    unknown = sorted(set(generation_kwargs) - known)
    if unknown:
        raise ConfigError(f"stepwise decoding does not support {', '.join(unknown)}; use --backend transformers")
    config = getattr(model, "generation_config", None)
    do_sample = bool(generation_kwargs.get("do_sample", False))
    settings = {
        "max_new_tokens": int(generation_kwargs.get("max_new_tokens", 64)),
        "do_sample": do_sample,
        "suppress_first": tuple(generation_kwargs.get("begin_suppress_tokens") or ()),
    }
    if do_sample:
        settings["temperature"] = float(generation_kwargs.get("temperature", getattr(config, "temperature", None) or 1.0))
        settings["top_p"] = float(generation_kwargs.get("top_p", getattr(config, "top_p", None) or 1.0))
        settings["top_k"] = int(generation_kwargs.get("top_k", getattr(config, "top_k", None) or 0))
    return settings


def decode_texts(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    mix: LoRAMix | None = None,
    adapter_weights: Sequence[Sequence[float]] | None = None,
    logit_weights: Sequence[Sequence[float]] | None = None,
    on_token: Callable[[int, int], bool | None] | None = None,
    max_rows: int = 64,
    **generation_kwargs: Any,
) -> list[str]:
    """Decode already rendered prompts to the end with a :class:`StepwiseDecoder`; cleaned texts in order.

    ``on_token(i, token_id)`` sees prompt ``i``'s tokens as they come (True stops that prompt).
    """
    from pluralign.generation.cleaning import clean_text, end_of_turn_ids, generation_overrides

    kwargs = {**generation_overrides(tokenizer), **generation_kwargs}
    kwargs.pop("batch_size", None)
    settings = request_settings(kwargs, model)
    stop_ids = end_of_turn_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    decoder = StepwiseDecoder(model, pad, mix=mix, max_rows=max_rows)
    requests = []
    for i, text in enumerate(texts):
        callback = (lambda t, i=i: on_token(i, t)) if on_token is not None else None
        requests.append(
            DecodeRequest(
                input_ids=token_ids(tokenizer, text),
                stop_ids=stop_ids,
                adapter_weights=adapter_weights[i] if adapter_weights is not None else None,
                logit_weights=logit_weights[i] if logit_weights is not None else None,
                on_token=callback,
                **settings,
            )
        )
    was_training = model.training
    model.eval()
    try:
        decoder.run(requests)
    finally:
        model.train(was_training)
    failed = next((r.error for r in requests if r.finish_reason == "error"), None)
    if failed is not None:
        raise failed
    return [clean_text(tokenizer.decode(r.generated, skip_special_tokens=True)) for r in requests]
