"""Serving: an OpenAI-compatible HTTP API steered per request, two batching engines, and a web page.

``create_app(policy)`` builds the FastAPI app; ``pluralign serve --model DIR`` runs it with uvicorn.
Requests go through a :class:`RequestBatcher` (fixed batches) or a :class:`ContinuousScheduler`
(requests join the running batch at the next token); both stream tokens as they are generated.
"""

from __future__ import annotations

from pluralign.serve.app import ServerSettings, create_app, find_front
from pluralign.serve.batcher import RequestBatcher
from pluralign.serve.scheduler import ContinuousScheduler

__all__ = ["ContinuousScheduler", "RequestBatcher", "ServerSettings", "create_app", "find_front"]
