"""``pluralign serve --model DIR``: an OpenAI-compatible HTTP API and a web page for a steerable model."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pluralign.config import parse_config
from pluralign.errors import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
API_KEY_ENV = "PLURALIGN_API_KEY"
BANK_METHODS = ("soups", "morlhf", "modpo")  # methods whose model dir is a bank of runs (LoRA or full weights)


@dataclass
class ServeConfig:
    """Options of ``pluralign serve`` (flags or ``--config FILE.yaml``)."""

    model: str | None = field(default=None, metadata={"help": "trained model dir (with pluralign.json)"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to bind; loopback unless you mean otherwise"})
    port: int = field(default=8000, metadata={"help": "TCP port"})
    model_name: str | None = field(default=None, metadata={"help": "model id in the API (default: the dir name)"})
    max_prompt_chars: int = field(default=8000, metadata={"help": "longer prompts get a 400 error"})
    max_tokens_limit: int = field(default=256, metadata={"help": "largest max_tokens a request may ask for"})
    default_max_tokens: int | None = field(
        default=None, metadata={"help": "max_tokens when a request gives none (default: min(64, max_tokens_limit))"}
    )
    batch_window_ms: float = field(default=10.0, metadata={"help": "how long to gather concurrent requests"})
    max_batch_size: int = field(default=32, metadata={"help": "most requests in one generate call"})
    backend: str = field(
        default="auto",
        metadata={
            "help": "auto | transformers (fixed batches) | continuous (requests join the running batch at the next "
            "token) | vllm (needs a GPU); auto: vllm where it can serve the model, else continuous (measured: "
            "docs/serving.md)"
        },
    )
    api_key: str | None = field(
        default=None,
        metadata={"help": f"require 'Authorization: Bearer KEY' on the API (default: ${API_KEY_ENV}, else no key)"},
    )
    merge_adapters: bool = field(
        default=False,
        metadata={"help": "serve a LoRA bank (soups, morlhf, modpo) as merged models, one per preference, "
                  "instead of one base with its adapters mixed per request"},
    )
    front: str | None = field(
        default=None, metadata={"help": "front.json for the page (default: found beside the model)"}
    )
    log_level: str = field(default="info", metadata={"help": "uvicorn log level"})


def build_app(config: ServeConfig):
    """Load the model of ``config`` and build the app (also used by benchmarks and tests)."""
    from pluralign.generation.policy_backends import VLLMPolicy, select_backend
    from pluralign.policies import load_policy
    from pluralign.serve.app import ServerSettings, create_app, find_front

    if not config.model:
        raise ConfigError("--model is required: the trained model dir to serve (e.g. out/demo/model)")
    for name in ("max_prompt_chars", "max_tokens_limit", "default_max_tokens", "max_batch_size"):
        if getattr(config, name) is not None and getattr(config, name) < 1:
            raise ConfigError(f"--{name} must be at least 1")
    default_max_tokens = config.default_max_tokens or min(64, config.max_tokens_limit)
    if default_max_tokens > config.max_tokens_limit:
        raise ConfigError("--default_max_tokens must not exceed --max_tokens_limit")
    if config.batch_window_ms < 0:
        raise ConfigError("--batch_window_ms must be >= 0")
    if config.backend not in ("auto", "transformers", "continuous", "vllm"):
        raise ConfigError(f"--backend {config.backend!r} is unknown; use auto, transformers, continuous or vllm")
    load_kwargs = {}
    if config.merge_adapters:
        from pluralign.models.manifest import Manifest

        if Manifest.load(config.model).method not in BANK_METHODS:
            raise ConfigError(f"--merge_adapters applies to model banks ({', '.join(BANK_METHODS)}) only")
        load_kwargs["mix_adapters"] = False
    policy = load_policy(config.model, **load_kwargs)
    if config.backend in ("auto", "vllm"):
        policy = select_backend(policy, config.backend)
    # auto: continuous batching unless vLLM took the policy (the load test in docs/serving.md chose it)
    engine = "transformers" if config.backend == "transformers" or isinstance(policy, VLLMPolicy) else "continuous"
    front = Path(config.front) if config.front else find_front(config.model)
    if config.front and not front.is_file():
        raise ConfigError(f"--front {config.front!r} does not exist; give a front.json written by pluralign evaluate")
    settings = ServerSettings(
        model_name=config.model_name or Path(config.model).resolve().name,
        max_prompt_chars=config.max_prompt_chars,
        max_tokens_limit=config.max_tokens_limit,
        default_max_tokens=default_max_tokens,
        batch_window_s=config.batch_window_ms / 1000.0,
        max_batch_size=config.max_batch_size,
        api_key=config.api_key or os.environ.get(API_KEY_ENV) or None,
        backend=engine,
    )
    return create_app(policy, settings, front_path=front)


def bind_warning(host: str, api_key: str | None) -> str | None:
    """The line printed when the server listens beyond loopback with no API key (None otherwise)."""
    if host in LOOPBACK or api_key:
        return None
    return (
        f"pluralign serve: warning: binding {host} without an API key: anyone who reaches this port can use "
        f"the model; set ${API_KEY_ENV} (or --api_key)"
    )


def run(argv: list[str]) -> int:
    """Serve until interrupted."""
    import uvicorn

    config = parse_config(ServeConfig, argv, prog="pluralign serve")
    app = build_app(config)
    warning = bind_warning(config.host, app.state.settings.api_key)
    if warning:
        print(warning, file=sys.stderr)
    settings = app.state.settings
    print(
        f"pluralign serve: {settings.model_name} on http://{config.host}:{config.port}/ "
        f"({app.state.batcher.backend} batching)",
        file=sys.stderr,
    )
    uvicorn.run(app, host=config.host, port=config.port, log_level=config.log_level)
    return 0
