"""The HTTP app: OpenAI-compatible completions steered per request, model info, health, and the web page.

``POST /v1/chat/completions`` and ``POST /v1/completions`` take OpenAI's request body plus one of
``preference`` ({objective: weight}, or a list in objective order) or ``context`` (the user's choices:
``[{"prompt", "chosen", "rejected"}, ...]``). Every request goes through one :class:`RequestBatcher`, so
concurrent requests with different preferences share a generate call. Mistakes in a request get a 4xx
answer in OpenAI's error shape (``{"error": {"message", "type", "param", "code"}}``) and the server
goes on serving. With ``stream: true`` the text is generated in full, then sent as server-sent events in
OpenAI's chunk shape ending with ``data: [DONE]`` (the batcher generates whole responses; see
docs/serving.md).
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
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

STATIC_DIR = Path(__file__).parent / "static"
FRONT_NAME = "front.json"


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


def create_app(
    policy: SteerablePolicy, settings: ServerSettings | None = None, front_path: str | Path | None = None
) -> FastAPI:
    """Build the FastAPI app serving ``policy``; ``front_path`` (a front.json) feeds the page's Pareto plot."""
    settings = settings or ServerSettings()
    batcher = RequestBatcher(policy, window_s=settings.batch_window_s, max_batch_size=settings.max_batch_size)
    front = Path(front_path) if front_path is not None else None
    count_tokens = TokenCounter(policy)
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await batcher.aclose()

    app = FastAPI(title="pluralign", summary="steerable generation, one preference per request", lifespan=lifespan)
    app.state.policy = policy
    app.state.batcher = batcher
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
            "limits": {"max_tokens": settings.max_tokens_limit, "max_prompt_chars": settings.max_prompt_chars},
            "front": front is not None and front.is_file(),
        }

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": settings.model_name, "batcher": batcher.stats.as_dict()}

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
    async def limit_body(request: Request, call_next):
        """Refuse bodies far larger than the prompt limits allow before reading them."""
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > max_body:
            return APIError(
                f"request body has {size} bytes; the limit is {max_body}", status=413, code="request_too_large"
            ).response()
        return await call_next(request)

    async def run_job(job: _Job) -> list[str]:
        async def one(prompt: Any) -> str:
            try:
                text = await batcher.submit(
                    prompt, preference=job.preference, context=job.context, **job.generation_kwargs
                )
            except PluralignError as exc:
                raise APIError(str(exc), param="context" if job.context is not None else "preference") from exc
            except Exception as exc:
                raise APIError(f"generation failed: {type(exc).__name__}: {exc}", 500, type_="server_error") from exc
            return _apply_stop(text, job.stop)

        return list(await asyncio.gather(*(one(p) for p in job.prompts)))

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
        texts = await run_job(job)
        rid, now = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        finishes = [_finish_reason(count_tokens, t, job) for t in texts]
        extra = _steering_echo(job)
        if body.stream:
            return _sse(_completion_chunks(rid, now, settings.model_name, texts, finishes))
        usage = _usage(count_tokens, [_prompt_text(p) for p in prompts], texts)
        choices = [
            {"index": i, "text": t, "logprobs": None, "finish_reason": f}
            for i, (t, f) in enumerate(zip(texts, finishes))
        ]
        return {
            "id": rid,
            "object": "text_completion",
            "created": now,
            "model": settings.model_name,
            "choices": choices,
            "usage": usage,
            **extra,
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest) -> Any:
        if not body.messages:
            raise APIError("messages is empty; give at least one message", param="messages")
        prompt = _messages_to_prompt(body.messages, policy)
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        job = _build_job(body, [prompt], max_tokens, policy, settings)
        (text,) = await run_job(job)
        rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        finish = _finish_reason(count_tokens, text, job)
        usage = _usage(count_tokens, [_prompt_text(prompt)], [text])
        if body.stream:
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            return _sse(_chat_chunks(rid, now, settings.model_name, text, finish, usage if include_usage else None))
        message = {"role": "assistant", "content": text}
        return {
            "id": rid,
            "object": "chat.completion",
            "created": now,
            "model": settings.model_name,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": usage,
            **_steering_echo(job),
        }

    return app


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
    return _Job(prompts, preference, context, gen, max_tokens, stop)


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
    """Messages as a conversation when the tokenizer has a chat template, else as plain text."""
    tokenizer = getattr(policy, "tokenizer", None)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return [{"role": m.role, "content": m.text()} for m in messages]
    if len(messages) == 1 and messages[0].role == "user":
        return messages[0].text()
    return "\n".join(f"{m.role}: {m.text()}" for m in messages) + "\nassistant:"


# --- responses ----------------------------------------------------------------------------------


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(str(m.get("content", "")) for m in prompt)


class TokenCounter:
    """Counts tokens for ``usage`` with the policy's tokenizer (words when it has none).

    It keeps its own copy of the tokenizer: a fast tokenizer used from the event loop while the
    generation thread pads with it fails with "Already borrowed".
    """

    def __init__(self, policy: SteerablePolicy) -> None:
        tokenizer = getattr(policy, "tokenizer", None)
        self.tokenizer = copy.deepcopy(tokenizer) if tokenizer is not None else None

    def __call__(self, text: str) -> int:
        if self.tokenizer is None:
            return len(text.split())
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def _usage(count: TokenCounter, prompts: Sequence[str], texts: Sequence[str]) -> dict[str, int]:
    prompt_tokens = sum(count(p) for p in prompts)
    completion_tokens = sum(count(t) for t in texts)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _apply_stop(text: str, stop: Sequence[str]) -> str:
    cuts = [text.find(s) for s in stop if s in text]
    return text[: min(cuts)] if cuts else text


def _finish_reason(count: TokenCounter, text: str, job: _Job) -> str:
    return "length" if count(text) >= job.max_tokens else "stop"


def _steering_echo(job: _Job) -> dict[str, Any]:
    """The preference each response was steered by (pluralign's extra field in the response)."""
    return {"preference": job.preference.as_dict() if job.preference is not None else None}


def _pieces(text: str) -> list[str]:
    """Word-sized pieces (each keeps its trailing spaces) whose concatenation is exactly ``text``."""
    return re.findall(r"\s*\S+\s*|\s+", text) or [""]


def _sse(events: Iterator[dict[str, Any]]) -> StreamingResponse:
    def encode() -> Iterator[str]:
        for event in events:
            yield f"data: {json.dumps(event)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(encode(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _chat_chunks(
    rid: str, created: int, model: str, text: str, finish: str, usage: dict[str, int] | None
) -> Iterator[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        return {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

    yield chunk({"role": "assistant", "content": ""}, None)
    for piece in _pieces(text):
        if piece:
            yield chunk({"content": piece}, None)
    yield chunk({}, finish)
    if usage is not None:
        yield {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage,
        }


def _completion_chunks(
    rid: str, created: int, model: str, texts: Sequence[str], finishes: Sequence[str]
) -> Iterator[dict[str, Any]]:
    for i, (text, finish) in enumerate(zip(texts, finishes)):
        pieces = [p for p in _pieces(text) if p] or [""]
        for j, piece in enumerate(pieces):
            last = j == len(pieces) - 1
            yield {
                "id": rid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [{"index": i, "text": piece, "logprobs": None, "finish_reason": finish if last else None}],
            }


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
