"""The HTTP app: OpenAI-compatible completions steered per request, model info, health, and the web page.

``POST /v1/chat/completions`` and ``POST /v1/completions`` take OpenAI's request body plus one of
``preference`` ({objective: weight}, or a list in objective order) or ``context`` (the user's choices:
``[{"prompt", "chosen", "rejected"}, ...]``), and for a LoRA bank ``mixing`` ("weights" or "logits").
Every request goes through one generation engine: the fixed batcher (:class:`RequestBatcher`, requests
wait for the running batch) or continuous batching (:class:`ContinuousScheduler`, requests join it at
the next token), so concurrent requests with different preferences share forward passes. With
``stream: true`` tokens leave as they are generated, as server-sent events in OpenAI's chunk shape
ending with ``data: [DONE]``; a client that disconnects frees its row. Mistakes in a request get a 4xx
answer in OpenAI's error shape (``{"error": {"message", "type", "param", "code"}}``) and the server goes
on serving. With an API key set, every endpoint but ``/health``, the page and its static files needs
``Authorization: Bearer KEY``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from pluralign.errors import PluralignError, PreferenceError
from pluralign.generation.policy import Choice, SteerablePolicy
from pluralign.preferences.weights import Preference
from pluralign.serve.batcher import RequestBatcher
from pluralign.serve.scheduler import ContinuousScheduler
from pluralign.serve.streams import Completion, ResponseStream

STATIC_DIR = Path(__file__).parent / "static"
FRONT_NAME = "front.json"
SERVE_BACKENDS = ("transformers", "continuous")
CHAT_ROLES = ("system", "developer", "user", "assistant")
OPEN_PATHS = ("/health", "/", "/favicon.ico")  # and /static/...: the page loads before the user gives a key


@dataclass
class ServerSettings:
    """Limits and batching of one server; every request beyond a limit gets a 400 answer."""

    model_name: str = "pluralign"
    max_prompt_chars: int = 8000
    max_tokens_limit: int = 256
    default_max_tokens: int = 64
    max_prompts_per_request: int = 16
    max_context_choices: int = 64
    batch_window_s: float = 0.01
    max_batch_size: int = 32
    api_key: str | None = None
    backend: str = "transformers"


class APIError(Exception):
    """An error answered in OpenAI's shape with an HTTP status."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.param, self.code, self.type = message, status, param, code, type_

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status)


class _SteeredRequest(BaseModel):
    """Fields shared by both completion endpoints; unknown OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    preference: Any = None
    context: Any = None
    mixing: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(part.get("text", "")) for part in self.content if part.get("type", "text") == "text")
        return self.content or ""


class ChatCompletionRequest(_SteeredRequest):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = None


class CompletionRequest(_SteeredRequest):
    prompt: str | list[str]


@dataclass
class _Job:
    """One validated request: prompts plus how to steer and generate them."""

    prompts: list[Any]
    preference: Preference | None
    context: list[Choice] | None
    generation_kwargs: dict[str, Any]
    max_tokens: int
    stop: list[str]
    mixing: str | None = None


def supports_continuous(policy: Any) -> bool:
    """True when the policy says how to decode a request token by token (``decode_target``)."""
    method = getattr(type(policy), "decode_target", None)
    return method is not None and method is not SteerablePolicy.decode_target


def make_engine(policy: SteerablePolicy, settings: ServerSettings) -> RequestBatcher | ContinuousScheduler:
    """The generation engine of ``settings.backend``; continuous batching falls back to fixed batches for a
    policy that generates only whole responses."""
    if settings.backend not in SERVE_BACKENDS:
        raise ValueError(f"backend must be one of {SERVE_BACKENDS}, got {settings.backend!r}")
    if settings.backend == "continuous" and supports_continuous(policy):
        return ContinuousScheduler(policy, max_batch_size=settings.max_batch_size)
    return RequestBatcher(policy, window_s=settings.batch_window_s, max_batch_size=settings.max_batch_size)


def create_app(
    policy: SteerablePolicy, settings: ServerSettings | None = None, front_path: str | Path | None = None
) -> FastAPI:
    """Build the FastAPI app serving ``policy``; ``front_path`` (a front.json) feeds the page's Pareto plot."""
    settings = settings or ServerSettings()
    engine = make_engine(policy, settings)
    front = Path(front_path) if front_path is not None else None
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.aclose()

    app = FastAPI(title="pluralign", summary="steerable generation, one preference per request", lifespan=lifespan)
    app.state.policy = policy
    app.state.batcher = engine
    app.state.settings = settings

    @app.exception_handler(APIError)
    async def _api_error(_request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request body"}
        loc = [str(x) for x in first.get("loc", ()) if x != "body"]
        param = ".".join(loc) or None
        where = f" (field {param!r})" if param else ""
        return APIError(f"{first.get('msg', 'invalid request')}{where}", param=param, code="invalid_request").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else None
        return APIError(str(exc.detail), status=exc.status_code, code=code).response()

    def model_card() -> dict[str, Any]:
        return {
            "id": settings.model_name,
            "object": "model",
            "created": created,
            "owned_by": "pluralign",
            "method": policy.method,
            "objectives": policy.objectives,
            "steering": ["preference", "context"],
            "mixing": list(getattr(policy, "mixings", ()) or ()),
            "limits": {"max_tokens": settings.max_tokens_limit, "max_prompt_chars": settings.max_prompt_chars},
            "front": front is not None and front.is_file(),
        }

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": settings.model_name,
            "backend": engine.backend,
            "batcher": engine.stats.as_dict(),
        }

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id}")
    async def get_model(model_id: str) -> dict[str, Any]:
        _check_model(model_id, settings)
        return model_card()

    @app.get("/front.json", include_in_schema=False)
    async def front_json() -> FileResponse:
        if front is None or not front.is_file():
            raise APIError("this model has no front.json beside it", status=404, code="not_found")
        return FileResponse(front, media_type="application/json")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    max_body = max_body_bytes(settings)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        """The API key (when set) on every endpoint but the open ones; bodies far larger than the prompt
        limits allow are refused before they are read."""
        if settings.api_key and not _is_open(request.url.path) and not _authorized(request, settings.api_key):
            return APIError(
                "missing or wrong API key: send the header 'Authorization: Bearer KEY' with the server's key",
                status=401,
                code="invalid_api_key",
            ).response()
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > max_body:
            return APIError(
                f"request body has {size} bytes; the limit is {max_body}", status=413, code="request_too_large"
            ).response()
        return await call_next(request)

    async def start(job: _Job) -> list[ResponseStream]:
        return [
            await engine.submit(
                p, preference=job.preference, context=job.context, stop=job.stop, mixing=job.mixing,
                **job.generation_kwargs,
            )
            for p in job.prompts
        ]

    def api_error(exc: BaseException, job: _Job) -> APIError:
        if isinstance(exc, APIError):
            return exc
        if isinstance(exc, PluralignError):
            param = "context" if job.context is not None else ("mixing" if job.mixing else "preference")
            return APIError(str(exc), param=param)
        return APIError(f"generation failed: {type(exc).__name__}: {exc}", 500, type_="server_error")

    async def complete(streams: list[ResponseStream], job: _Job) -> list[Completion]:
        try:
            return list(await asyncio.gather(*(s.result() for s in streams)))
        except asyncio.CancelledError:  # the client went away: free the rows
            for s in streams:
                s.cancel()
            raise
        except Exception as exc:
            for s in streams:
                s.cancel()
            raise api_error(exc, job) from exc

    async def stream_events(streams: list[ResponseStream], job: _Job, render) -> StreamingResponse:
        """SSE of the streams' deltas as they come; the first event is awaited here, so a request whose
        generation fails at once gets an ordinary error response."""
        events = _merge_streams(streams)
        try:
            first = await anext(events)
        except StopAsyncIteration:
            first = None
        except Exception as exc:
            for s in streams:
                s.cancel()
            raise api_error(exc, job) from exc

        async def body() -> AsyncIterator[str]:
            try:
                for event in render(first):
                    yield f"data: {json.dumps(event)}\n\n"
                async for item in events:
                    for event in render(item):
                        yield f"data: {json.dumps(event)}\n\n"
                for event in render(None):
                    yield f"data: {json.dumps(event)}\n\n"
            except Exception as exc:  # headers are sent: the error goes in the stream
                err = api_error(exc, job)
                payload = {"message": err.message, "type": err.type, "param": err.param, "code": err.code}
                yield f"data: {json.dumps({'error': payload})}\n\n"
            finally:
                for s in streams:
                    s.cancel()  # a no-op for finished streams; frees the rows of a client that left
            yield "data: [DONE]\n\n"

        return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> Any:
        prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        if not prompts:
            raise APIError("prompt is empty; give a string or a non-empty list of strings", param="prompt")
        if len(prompts) > settings.max_prompts_per_request:
            raise APIError(
                f"{len(prompts)} prompts in one request; the limit is {settings.max_prompts_per_request}",
                param="prompt",
            )
        job = _build_job(body, prompts, body.max_tokens, policy, settings)
        rid, now = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        streams = await start(job)
        if body.stream:
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            return await stream_events(
                streams, job, _completion_renderer(rid, now, settings.model_name, streams, include_usage, job)
            )
        done = await complete(streams, job)
        choices = [
            {"index": i, "text": c.text, "logprobs": None, "finish_reason": c.finish_reason} for i, c in enumerate(done)
        ]
        return {
            "id": rid,
            "object": "text_completion",
            "created": now,
            "model": settings.model_name,
            "choices": choices,
            "usage": _usage(done),
            **_steering_echo(job),
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest) -> Any:
        if not body.messages:
            raise APIError("messages is empty; give at least one message", param="messages")
        prompt = _messages_to_prompt(body.messages, policy)
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        job = _build_job(body, [prompt], max_tokens, policy, settings)
        rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        streams = await start(job)
        if body.stream:
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            return await stream_events(
                streams, job, _chat_renderer(rid, now, settings.model_name, streams, include_usage, job)
            )
        (done,) = await complete(streams, job)
        message = {"role": "assistant", "content": done.text}
        return {
            "id": rid,
            "object": "chat.completion",
            "created": now,
            "model": settings.model_name,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": done.finish_reason}],
            "usage": _usage([done]),
            **_steering_echo(job),
        }

    return app


def _is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith("/static/")


def _authorized(request: Request, key: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


# --- request validation -------------------------------------------------------------------------


def _check_model(model: str | None, settings: ServerSettings) -> None:
    if model is not None and model != settings.model_name:
        raise APIError(
            f"model {model!r} is not served here; this server serves {settings.model_name!r} (see GET /v1/models)",
            status=404,
            param="model",
            code="model_not_found",
        )


def _build_job(
    body: _SteeredRequest, prompts: list[Any], max_tokens: int | None, policy: SteerablePolicy, settings: ServerSettings
) -> _Job:
    """Check every field against the model and the limits; any mistake is a 400 naming the field."""
    _check_model(body.model, settings)
    if body.n != 1:
        raise APIError(f"n={body.n} is not supported; ask for one choice per request (n=1)", param="n")
    for p in prompts:
        size = len(_prompt_text(p))
        if size > settings.max_prompt_chars:
            raise APIError(
                f"prompt has {size} characters; the limit is {settings.max_prompt_chars}",
                param="prompt" if isinstance(body, CompletionRequest) else "messages",
                code="context_length_exceeded",
            )
    max_tokens = settings.default_max_tokens if max_tokens is None else max_tokens
    if not 1 <= max_tokens <= settings.max_tokens_limit:
        raise APIError(
            f"max_tokens is {max_tokens}; it must be between 1 and {settings.max_tokens_limit} on this server",
            param="max_tokens",
            code="max_tokens_exceeded" if max_tokens > settings.max_tokens_limit else "invalid_value",
        )
    gen: dict[str, Any] = {"max_new_tokens": max_tokens}
    if body.temperature is not None and not 0 <= body.temperature <= 2:
        raise APIError(f"temperature is {body.temperature}; it must be between 0 and 2", param="temperature")
    if body.top_p is not None and not 0 < body.top_p <= 1:
        raise APIError(f"top_p is {body.top_p}; it must be in (0, 1]", param="top_p")
    if body.temperature:  # None or 0 means greedy, as `pluralign generate` does by default
        gen.update(do_sample=True, temperature=float(body.temperature))
        if body.top_p is not None:
            gen["top_p"] = float(body.top_p)
    else:
        gen["do_sample"] = False
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stop) > 4 or any(not s for s in stop):
        raise APIError("stop takes up to 4 non-empty strings", param="stop")
    preference, context = _resolve_steering(body, policy, settings)
    mixing = body.mixing
    if mixing is not None and mixing not in (getattr(policy, "mixings", ()) or ()):
        offered = tuple(getattr(policy, "mixings", ()) or ())
        fix = f"use one of {', '.join(offered)}" if offered else "this model is not a bank of LoRA adapters; leave it out"
        raise APIError(f"mixing {mixing!r} is not available: {fix}", param="mixing")
    return _Job(prompts, preference, context, gen, max_tokens, stop, mixing)


def _resolve_steering(
    body: _SteeredRequest, policy: SteerablePolicy, settings: ServerSettings
) -> tuple[Preference | None, list[Choice] | None]:
    if body.preference is not None and body.context is not None:
        raise APIError("give either preference or context, not both", param="preference")
    if body.preference is not None:
        if not isinstance(body.preference, dict | list):
            raise APIError(
                f"preference must be an object {{objective: weight}} over {policy.objectives}", param="preference"
            )
        try:
            return policy.resolve_preference(body.preference), None
        except PreferenceError as exc:
            code = "unknown_objective" if "unknown objective" in str(exc) else "invalid_preference"
            raise APIError(str(exc), param="preference", code=code) from exc
    if body.context is not None:
        return None, _parse_context(body.context, settings)
    return None, None


def _parse_context(raw: Any, settings: ServerSettings) -> list[Choice]:
    """The user's choices, checked by :func:`pluralign.preferences.inference.validate_context` and the limits."""
    from pluralign.preferences.inference import validate_context

    if isinstance(raw, list) and len(raw) > settings.max_context_choices:
        raise APIError(f"context has {len(raw)} choices; the limit is {settings.max_context_choices}", param="context")
    try:
        choices = validate_context(raw)
    except PreferenceError as exc:
        raise APIError(str(exc), param="context") from exc
    size = sum(len(_prompt_text(x)) for c in choices for x in c)
    if size > settings.max_prompt_chars:
        raise APIError(
            f"context has {size} characters; the limit is {settings.max_prompt_chars}",
            param="context",
            code="context_length_exceeded",
        )
    return choices


def _messages_to_prompt(messages: Sequence[ChatMessage], policy: SteerablePolicy) -> Any:
    """Messages as a conversation when the tokenizer has a chat template, else as plain text; a role the
    server does not know is a 400 naming the message."""
    for i, m in enumerate(messages):
        if m.role not in CHAT_ROLES:
            raise APIError(
                f"messages[{i}].role is {m.role!r}; this server takes the roles {', '.join(CHAT_ROLES)}",
                param=f"messages[{i}].role",
                code="invalid_role",
            )
    tokenizer = getattr(policy, "tokenizer", None)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in messages]
    if len(messages) == 1 and messages[0].role == "user":
        return messages[0].text()
    return "\n".join(f"{m.role}: {m.text()}" for m in messages) + "\nassistant:"


# --- responses ----------------------------------------------------------------------------------


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(str(m.get("content", "")) for m in prompt)


def _usage(done: Sequence[Completion]) -> dict[str, int]:
    """OpenAI's usage: the rendered prompts' tokens (chat template and steering tags included) and the
    generated tokens."""
    prompt_tokens = sum(c.prompt_tokens for c in done)
    completion_tokens = sum(c.completion_tokens for c in done)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _steering_echo(job: _Job) -> dict[str, Any]:
    """The preference each response was steered by (pluralign's extra field in the response)."""
    echo: dict[str, Any] = {"preference": job.preference.as_dict() if job.preference is not None else None}
    if job.mixing is not None:
        echo["mixing"] = job.mixing
    return echo


async def _merge_streams(streams: Sequence[ResponseStream]) -> AsyncIterator[tuple[int, str | None]]:
    """``(index, delta)`` from every stream as it comes, ``(index, None)`` when stream ``index`` ends."""
    if len(streams) == 1:
        async for delta in streams[0].deltas():
            yield 0, delta
        yield 0, None
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, stream: ResponseStream) -> None:
        try:
            async for delta in stream.deltas():
                await queue.put((i, delta))
            await queue.put((i, None))
        except Exception as exc:
            await queue.put((i, exc))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(streams)
        while remaining:
            i, item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            if item is None:
                remaining -= 1
            yield i, item
    finally:
        for task in tasks:
            task.cancel()


def _chat_renderer(rid: str, created: int, model: str, streams: Sequence[ResponseStream], include_usage: bool, job: _Job):
    """Events of a streamed chat completion: the role, each content delta, the finish reason, the usage."""
    started = False

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices, **extra}

    def render(item: tuple[int, str | None] | None) -> list[dict[str, Any]]:
        nonlocal started
        events = []
        if not started:
            started = True
            delta = {"role": "assistant", "content": ""}
            events.append(chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]))
        if item is None:
            if include_usage:
                events.append(chunk([], usage=_usage([s.completion for s in streams if s.completion])))
            return events
        i, delta = item
        if delta is None:
            finish = streams[i].completion.finish_reason
            events.append(chunk([{"index": i, "delta": {}, "logprobs": None, "finish_reason": finish}], **_steering_echo(job)))
        else:
            events.append(chunk([{"index": i, "delta": {"content": delta}, "logprobs": None, "finish_reason": None}]))
        return events

    return render


def _completion_renderer(
    rid: str, created: int, model: str, streams: Sequence[ResponseStream], include_usage: bool, job: _Job
):
    """Events of a streamed text completion: each text delta of each prompt, its finish reason, the usage."""

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"id": rid, "object": "text_completion", "created": created, "model": model, "choices": choices, **extra}

    def render(item: tuple[int, str | None] | None) -> list[dict[str, Any]]:
        if item is None:
            done = [s.completion for s in streams if s.completion]
            return [chunk([], usage=_usage(done))] if include_usage else []
        i, delta = item
        if delta is None:
            finish = streams[i].completion.finish_reason
            return [chunk([{"index": i, "text": "", "logprobs": None, "finish_reason": finish}], **_steering_echo(job))]
        return [chunk([{"index": i, "text": delta, "logprobs": None, "finish_reason": None}])]

    return render


def max_body_bytes(settings: ServerSettings) -> int:
    """Largest request body accepted: every prompt (and a context) at the character limit, in UTF-8, plus room."""
    return 4 * settings.max_prompt_chars * (settings.max_prompts_per_request + 1) + 65536


def find_front(model_dir: str | Path) -> Path | None:
    """The front.json of a model: in its folder, or beside it (``pluralign demo`` writes DIR/model + DIR/front.json)."""
    model_dir = Path(model_dir)
    for candidate in (model_dir / FRONT_NAME, model_dir.parent / FRONT_NAME):
        if candidate.is_file():
            return candidate
    return None
