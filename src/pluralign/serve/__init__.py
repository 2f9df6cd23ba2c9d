"""Serving: an OpenAI-compatible HTTP API steered per request, a request batcher, and a web page.

``create_app(policy)`` builds the FastAPI app; ``pluralign serve --model DIR`` runs it with uvicorn.
"""

from __future__ import annotations

from pluralign.serve.app import ServerSettings, create_app, find_front
from pluralign.serve.batcher import RequestBatcher

__all__ = ["RequestBatcher", "ServerSettings", "create_app", "find_front"]
