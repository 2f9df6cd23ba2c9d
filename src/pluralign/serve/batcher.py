"""Fixed batches: collect concurrent requests for a short window and generate them in one call.

Requests that arrive within ``window_s`` of the first one waiting form a batch. Inside a batch they are
grouped by their generation settings (``max_new_tokens``, ``do_sample``, ...), because one generate call
takes one set of settings; each group is one ``policy.generate_many(prompts, preferences, **gen)`` call,
so requests with *different* preferences share a forward pass and each answer is steered by its own
request's preference. Requests steered by a user's choices (``context``) are grouped by identical
context and go through ``policy.generate(prompts, context=...)``.

Every row of a batch streams: a policy that passes ``on_token`` through to
:func:`pluralign.generation.batched.generate_batched` (``token_streaming``) hands each row's tokens to that
request's :class:`~pluralign.serve.streams.TokenSink` as they are generated, and a row whose client left
(or whose text is final) stops at its next token. A policy without it streams its whole text at the end.

Generation runs in one worker thread: the event loop keeps accepting requests, which wait for the
running batch to end and form the next one (``--backend continuous`` lets them join at the next token).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pluralign.errors import PluralignError
from pluralign.generation.policy import Choice, SteerablePolicy
from pluralign.preferences.weights import Preference
from pluralign.serve.streams import ResponseStream, ServeStats, Submission, TokenSink, count_prompt_tokens


@dataclass
class _Pending(Submission):
    sink: TokenSink | None = field(default=None, repr=False)

    def group_key(self) -> Hashable:
        gen = tuple(sorted((k, _freeze(v)) for k, v in self.generation_kwargs.items()))
        if self.context is None:
            return ("preference", gen)
        return ("context", gen, json.dumps(self.context, sort_keys=True, default=str))


def _freeze(value: Any) -> Hashable:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


class RequestBatcher:
    """Batch concurrent generation requests for one :class:`SteerablePolicy`.

    ``await batcher.submit(prompt, preference=..., max_new_tokens=...)`` returns the request's
    :class:`ResponseStream` (its text deltas as they are generated, then the completion).
    The queue and its worker task belong to the event loop that first submits (created lazily, so the
    batcher works under uvicorn and under an in-process ASGI test client alike).
    """

    backend = "transformers"

    def __init__(self, policy: SteerablePolicy, window_s: float = 0.01, max_batch_size: int = 32) -> None:
        if window_s < 0:
            raise ValueError("window_s must be >= 0")
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.policy = policy
        self.window_s = window_s
        self.max_batch_size = max_batch_size
        self.stats = ServeStats()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pluralign-generate")
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(
        self,
        prompt: Any,
        preference: Preference | None = None,
        context: Sequence[Choice] | None = None,
        stop: Sequence[str] = (),
        **generation_kwargs: Any,
    ) -> ResponseStream:
        """Queue one request; its stream yields the text as it is generated (errors of its batch are raised there)."""
        loop = asyncio.get_running_loop()
        self._ensure_worker(loop)
        ctx = tuple(tuple(c) for c in context) if context is not None else None
        gen = {k: v for k, v in generation_kwargs.items() if v is not None}
        pending = _Pending(prompt, preference, ctx, gen, ResponseStream(loop), tuple(stop))
        assert self._queue is not None
        await self._queue.put(pending)
        return pending.stream

    async def aclose(self) -> None:
        """Stop the worker task and the generation thread."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _ensure_worker(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not loop or self._worker is None or self._worker.done():
            self._loop = loop
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._work(), name="pluralign-batcher")

    async def _collect(self) -> list[_Pending]:
        """Wait for one request, then gather more until the window closes or the batch is full."""
        assert self._queue is not None
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window_s
        while len(batch) < self.max_batch_size:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            self.stats.batches += 1
            self.stats.requests += len(batch)
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            groups: dict[Hashable, list[_Pending]] = {}
            for item in batch:
                groups.setdefault(item.group_key(), []).append(item)
            for group in groups.values():
                live = [g for g in group if not g.stream.cancelled]
                if not live:
                    continue
                start = time.perf_counter()
                self.stats.generate_calls += 1  # counted first: the responses may be read before the call returns
                try:
                    await loop.run_in_executor(self._executor, self._generate_group, live)
                except Exception as exc:  # the error belongs to these requests; the server goes on
                    self.stats.failed_requests += len(live)
                    for item in live:
                        item.stream.fail(exc)
                finally:
                    self.stats.busy_seconds += time.perf_counter() - start

    def _generate_group(self, group: list[_Pending]) -> None:
        """One generate call for ``group`` (in the generation thread); each row streams into its sink."""
        gen = dict(group[0].generation_kwargs)
        prompts = [g.prompt for g in group]
        tokenizer = getattr(self.policy, "tokenizer", None)
        for g in group:
            g.sink = TokenSink(g.stream, tokenizer, g.stop, int(gen.get("max_new_tokens", 64)))
        if getattr(self.policy, "token_streaming", False):
            gen["on_token"] = lambda i, token: group[i].sink.on_token(token)
        preference = None
        if group[0].context is not None:
            context = list(group[0].context)
            if type(self.policy).generate is SteerablePolicy.generate:  # infer once, then as generate would
                preference = self.policy.preference_for(None, context)
                texts = self.policy.generate_many(prompts, [preference] * len(prompts), **gen)
            else:
                texts = self.policy.generate(prompts, context=context, **gen)
            preferences = [preference] * len(group)
        else:
            preferences = [g.preference for g in group]
            texts = self.policy.generate_many(prompts, preferences, **gen)
        if len(texts) != len(group):
            raise RuntimeError(f"policy returned {len(texts)} responses for {len(group)} prompts")
        count = _word_or_token_counter(tokenizer)
        for g, text, w in zip(group, texts, preferences):
            try:
                g.sink.prompt_tokens = count_prompt_tokens(self.policy, g.prompt, w)
            except PluralignError:
                g.sink.prompt_tokens = count(self.policy.rendered_prompt(g.prompt, None))
            g.sink.finish(whole_text=text, count=count)


def _word_or_token_counter(tokenizer: Any):
    if tokenizer is None:
        return lambda text: len(text.split())
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
