"""Continuous batching behind the server: a request joins the running batch at the next decode step.

:class:`ContinuousScheduler` runs one generation thread. Each request is turned into the exact prompt
and model the policy would generate it with (``policy.decode_target``: RiC's tags, a LoRA bank's
per-row mix, a full-weight bank's member) and handed to a
:class:`pluralign.generation.stepwise.StepwiseDecoder` for that model; the thread steps every decoder
with work, one token per row per step, so a request that arrives while others are decoding starts at
the next step instead of waiting for them to end, and a request that ends (or whose client left) frees
its row at once. Tokens stream out through each request's :class:`~pluralign.serve.streams.TokenSink`.

A policy without ``decode_target`` (it generates only whole responses: vLLM, NP-DPO, images) is served
by the fixed batcher instead (:func:`pluralign.serve.app.create_app` picks it).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pluralign.generation.cleaning import end_of_turn_ids, generation_overrides
from pluralign.generation.policy import Choice, SteerablePolicy
from pluralign.generation.stepwise import DecodeRequest, StepwiseDecoder, request_settings
from pluralign.models.sequences import token_ids
from pluralign.preferences.weights import Preference
from pluralign.serve.streams import ResponseStream, ServeStats, Submission, TokenSink


@dataclass
class SchedulerStats(ServeStats):
    """The shared ``/health`` counters plus decode steps, prefills and requests whose client left."""

    steps: int = 0
    prefills: int = 0
    cancelled_requests: int = 0


@dataclass
class _Submission(Submission):
    request: DecodeRequest | None = field(default=None, repr=False)


class ContinuousScheduler:
    """Serves a policy with continuous batching: one thread, one :class:`StepwiseDecoder` per model."""

    backend = "continuous"

    def __init__(self, policy: SteerablePolicy, max_batch_size: int = 32) -> None:
        self.policy = policy
        self.max_rows = max(1, max_batch_size)
        self.stats = SchedulerStats()
        self._incoming: list[_Submission] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._decoders: dict[int, StepwiseDecoder] = {}
        self._thread: threading.Thread | None = None
        tokenizer = getattr(policy, "tokenizer", None)
        self._stop_ids = end_of_turn_ids(tokenizer) if tokenizer is not None else []
        self._overrides = generation_overrides(tokenizer) if tokenizer is not None else {}

    async def submit(
        self,
        prompt: Any,
        preference: Preference | None = None,
        context: Sequence[Choice] | None = None,
        stop: Sequence[str] = (),
        **generation_kwargs: Any,
    ) -> ResponseStream:
        """Queue one request; it joins the running batch at the next step."""
        loop = asyncio.get_running_loop()
        self._ensure_thread()
        ctx = tuple(tuple(c) for c in context) if context is not None else None
        gen = {k: v for k, v in generation_kwargs.items() if v is not None}
        sub = _Submission(prompt, preference, ctx, gen, ResponseStream(loop), tuple(stop))
        sub.stream.on_cancel(lambda: self._cancel(sub))
        with self._lock:
            self._incoming.append(sub)
            self.stats.requests += 1
        self._wake.set()
        return sub.stream

    async def aclose(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 10)
            self._thread = None

    # --- generation thread ----------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="pluralign-continuous", daemon=True)
            self._thread.start()

    def _cancel(self, sub: _Submission) -> None:
        if sub.request is not None:
            sub.request.cancel()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop:
            with self._lock:
                incoming, self._incoming = self._incoming, []
            for sub in incoming:
                self._start(sub)
            busy = [d for d in self._decoders.values() if d.busy()]
            if not busy:
                self._decoders.clear()  # release models no request uses
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            start = time.perf_counter()
            for decoder in busy:
                steps, prefills = decoder.steps, decoder.prefills
                decoder.step()
                self.stats.steps += decoder.steps - steps
                self.stats.prefills += decoder.prefills - prefills
                self.stats.largest_batch = max(self.stats.largest_batch, decoder.rows)
            self.stats.busy_seconds += time.perf_counter() - start

    def _start(self, sub: _Submission) -> None:
        """Steer, render and tokenize one request and hand it to its model's decoder."""
        if sub.stream.cancelled:
            self.stats.cancelled_requests += 1
            return
        try:
            gen = dict(sub.generation_kwargs)
            mixing = gen.pop("mixing", None)
            preference = sub.preference
            if sub.context is not None:
                preference = self.policy.preference_for(None, list(sub.context))
            target = self.policy.decode_target(sub.prompt, preference, mixing=mixing)
            tokenizer = target.tokenizer
            settings = request_settings({**self._overrides, **gen}, target.model)
            ids = token_ids(tokenizer, target.text)
            sink = TokenSink(sub.stream, tokenizer, sub.stop, settings["max_new_tokens"])
            sink.prompt_tokens = len(ids)
            decoder = self._decoder(target, tokenizer)
        except Exception as exc:
            self.stats.failed_requests += 1
            sub.stream.fail(exc)
            return

        def on_end(reason: str, error: BaseException | None) -> None:
            if reason == "error":
                self.stats.failed_requests += 1
                sub.stream.fail(error or RuntimeError("generation failed"))
            elif reason == "cancelled":
                self.stats.cancelled_requests += 1
                sub.stream.fail(RuntimeError("cancelled"))
            else:
                sink.finish(reason)

        sub.request = DecodeRequest(
            input_ids=ids,
            stop_ids=self._stop_ids,
            adapter_weights=target.adapter_weights,
            logit_weights=target.logit_weights,
            on_token=sink.on_token,
            on_end=on_end,
            **settings,
        )
        if sub.stream.cancelled:
            sub.request.cancel()
        decoder.add(sub.request)

    def _decoder(self, target: Any, tokenizer: Any) -> StepwiseDecoder:
        key = id(target.model)
        decoder = self._decoders.get(key)
        if decoder is None or decoder.model is not target.model:
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            target.model.eval()
            decoder = StepwiseDecoder(target.model, pad, mix=target.mix, max_rows=self.max_rows)
            self._decoders[key] = decoder
        return decoder
