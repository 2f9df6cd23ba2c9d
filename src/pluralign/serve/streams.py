"""One response on its way from the generation thread to the HTTP handler, delta by delta.

The generation thread (the fixed batcher's or the continuous scheduler's) owns a :class:`TokenSink` per
request: it feeds generated token ids into a :class:`pluralign.generation.text_stream.TokenText` and pushes
each safe text delta into the request's :class:`ResponseStream` with ``call_soon_threadsafe``; the handler
reads the deltas with ``async for`` as they come (``stream: true``) or waits for the whole text. A client
that goes away cancels its stream, and the generation thread drops its row at the next token.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pluralign.generation.policy import Choice
from pluralign.generation.text_stream import TokenText, apply_stop
from pluralign.models.sequences import token_ids
from pluralign.preferences.weights import Preference

_END = object()


@dataclass
class ServeStats:
    """Counters exposed on ``/health``, named alike by both backends: requests served, in how many batches
    and generate calls, the largest batch, failures, and the seconds spent generating."""

    requests: int = 0
    batches: int = 0
    generate_calls: int = 0
    largest_batch: int = 0
    failed_requests: int = 0
    busy_seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass
class Submission:
    """One request as it waits for a backend: what to generate, and the stream its text goes to."""

    prompt: Any
    preference: Preference | None
    context: tuple[Choice, ...] | None
    generation_kwargs: dict[str, Any]
    stream: ResponseStream = field(repr=False)
    stop: tuple[str, ...] = ()


@dataclass
class Completion:
    """How one response ended: its whole text, why it stopped, and its token counts."""

    text: str
    finish_reason: str
    completion_tokens: int
    prompt_tokens: int


class ResponseStream:
    """Text deltas of one response, produced on a generation thread and read on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue = asyncio.Queue()
        self.completion: Completion | None = None
        self.cancelled = False
        self._on_cancel: list[Callable[[], None]] = []

    # --- generation thread ---------------------------------------------------------------------

    def _put(self, item: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone (server shutting down)
            self.cancelled = True

    def push(self, delta: str) -> None:
        if delta:
            self._put(delta)

    def end(self, completion: Completion) -> None:
        self._put((_END, completion))

    def fail(self, error: BaseException) -> None:
        self._put((_END, error))

    # --- event loop ----------------------------------------------------------------------------

    def on_cancel(self, callback: Callable[[], None]) -> None:
        self._on_cancel.append(callback)
        if self.cancelled:
            callback()

    def cancel(self) -> None:
        """The client is gone: generation of this response stops at its next token."""
        if not self.cancelled:
            self.cancelled = True
            for callback in self._on_cancel:
                callback()

    async def deltas(self) -> AsyncIterator[str]:
        """Each new piece of text as it is generated; raises the generation's error, if any."""
        while True:
            item = await self._queue.get()
            if isinstance(item, str):
                yield item
                continue
            _, outcome = item
            if isinstance(outcome, BaseException):
                raise outcome
            self.completion = outcome
            return

    async def result(self) -> Completion:
        """Wait for the whole response."""
        async for _ in self.deltas():
            pass
        assert self.completion is not None
        return self.completion


class TokenSink:
    """The generation side of one :class:`ResponseStream`: tokens in, deltas out, then the completion.

    ``tokenizer`` decodes (used only on the generation thread); ``stop`` are the request's stop strings.
    """

    def __init__(self, stream: ResponseStream, tokenizer: Any, stop: Sequence[str], max_tokens: int) -> None:
        self.stream = stream
        self.text = TokenText(tokenizer, stop=stop) if tokenizer is not None else None
        self.stop = list(stop)
        self.max_tokens = max_tokens
        self.prompt_tokens = 0

    @property
    def saw_tokens(self) -> bool:
        return self.text is not None and bool(self.text.ids or self.text.done)

    def on_token(self, token_id: int) -> bool:
        """Take one token; True when this row needs no more (final text, or the client left)."""
        if self.stream.cancelled:
            return True
        if self.text is None:
            return False
        done = self.text.add(token_id)
        self.stream.push(self.text.take())
        return done or self.stream.cancelled

    def finish(self, reason: str | None = None, whole_text: str | None = None, count: Callable[[str], int] | None = None) -> None:
        """End the response. ``reason``: the decoder's (``stop`` / ``length``); ``whole_text``: the text a
        whole-response generate call returned (the truth when given: streamed deltas are its prefix)."""
        if whole_text is not None:
            final = apply_stop(whole_text, self.stop)
        else:
            self.text.done = True  # the row has ended: nothing is held back any more
            final = self.text.final_text()
        emitted = self.text.emitted if self.text is not None else ""
        rest = final[len(emitted) :] if final.startswith(emitted) else ""
        for piece in [rest] if self.saw_tokens else _pieces(rest):
            self.stream.push(piece)
        if self.saw_tokens:
            tokens = self.text.completion_tokens
            if reason is None:
                reason = "length" if not self.text.done and tokens >= self.max_tokens else "stop"
        else:
            tokens = count(final) if count is not None else len(final.split())
            if reason is None:
                reason = "length" if tokens >= self.max_tokens else "stop"
        self.stream.end(Completion(final, reason, tokens, self.prompt_tokens))


def _pieces(text: str) -> list[str]:
    """Word-sized pieces (each keeps its trailing spaces) whose concatenation is exactly ``text``: how a
    whole response is streamed when the policy generates whole responses only."""
    return re.findall(r"\s*\S+\s*|\s+", text)


def count_prompt_tokens(policy: Any, prompt: Any, preference: Any) -> int:
    """Tokens of the exact prompt the model sees for this request (chat template and steering tags included)."""
    text = policy.rendered_prompt(prompt, preference)
    tokenizer = getattr(policy, "tokenizer", None)
    if tokenizer is None:
        return len(text.split())
    return len(token_ids(tokenizer, text))
