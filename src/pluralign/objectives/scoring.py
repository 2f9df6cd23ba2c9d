"""Scoring samples (texts, or captions and images) with K objectives through an on-disk cache, so interrupted
runs resume. One loop (:func:`_score_cached`) serves both.

The cache is a SQLite file keyed by (objective identity, hash of prompt and response). Scores are
committed chunk by chunk: a run killed half-way keeps every finished chunk, and a rerun scores only
what is missing. NaN scores are refused before they enter the cache.

Under ``accelerate launch`` every process calls :func:`score_samples` with the same rows: the missing
rows are dealt between the processes, each round of chunks is gathered, and only the main process
writes the cache (a single SQLite writer, also safe on a network filesystem shared by several nodes);
every process returns the full result.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pluralign.data.loading import check_prompt, response_text
from pluralign.errors import DataError
from pluralign.models.state import all_gather, broadcast, world
from pluralign.objectives.image import image_digest
from pluralign.objectives.set import ObjectiveSet, check_finite


def pair_key(prompt: Any, response: str) -> str:
    """The cache key of a (prompt, response) pair; a conversational prompt is keyed by its messages."""
    text = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)
    return hashlib.sha1(f"{text}\x00{response}".encode()).hexdigest()


def _retry_while_locked(op, seconds: float = 120.0):
    """Run ``op``; while SQLite says the database is locked, wait a little and run it again."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return op()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class ScoreCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # several processes (accelerate launch) may share one cache: WAL lets readers run beside the one
        # writer, and a writer waits for the lock instead of failing with "database is locked"
        self.conn = sqlite3.connect(str(self.path), timeout=120)
        # two processes opening a new cache at once: switching to WAL can fail at once with "database is
        # locked" (SQLite skips the busy handler there), so the switch is retried until the other is done
        _retry_while_locked(lambda: self.conn.execute("PRAGMA journal_mode=WAL"))
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS scores (objective TEXT, key TEXT, score REAL, PRIMARY KEY (objective, key))"
        )  # waits on the lock through the connection's busy timeout
        self.conn.commit()

    def get(self, objective: str, keys: Sequence[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            q = f"SELECT key, score FROM scores WHERE objective=? AND key IN ({','.join('?' * len(chunk))})"
            out.update(dict(self.conn.execute(q, [objective, *chunk]).fetchall()))
        return out

    def put(self, objective: str, items: dict[str, float]) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO scores VALUES (?, ?, ?)", [(objective, k, float(v)) for k, v in items.items()]
        )
        self.conn.commit()

    def count(self, objective: str | None = None) -> int:
        if objective is None:
            return self.conn.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM scores WHERE objective=?", (objective,)).fetchone()[0]

    def copy_to(self, path: str | Path) -> None:
        """Write every score to a new cache file at ``path``, through SQLite's backup API: it reads what
        this connection sees, scores still in the write-ahead log included (copying the file would miss them)."""
        target = sqlite3.connect(str(path))
        try:
            self.conn.backup(target)
        finally:
            target.close()

    def close(self) -> None:
        self.conn.close()


def score_samples(
    samples: Sequence[dict],
    objectives: ObjectiveSet,
    cache: ScoreCache | None = None,
    chunk_size: int = 256,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, list[float]]:
    """Score every sample's (prompt, response) with every objective, reusing and filling ``cache``.

    Prompts reach the objectives as given: text, or a list of messages that each objective renders the way
    it was trained (a reward model with its chat template); responses as their stripped text.
    Returns ``{objective name: [score per sample]}``. ``progress(name, done, total)`` is called per chunk.
    """
    prompts = [check_prompt(s["prompt"]) for s in samples]
    responses = [response_text(s["response"]) for s in samples]
    keys = [pair_key(p, r) for p, r in zip(prompts, responses)]
    if world()[1] > 1:
        return _score_across_processes(prompts, responses, keys, objectives, cache, chunk_size, progress)
    return _score_cached(keys, lambda idx: ([prompts[i] for i in idx], [responses[i] for i in idx]), objectives,
                         cache, chunk_size, progress, report_start=True)  # fmt: skip


def _score_cached(
    keys: list[str],
    inputs: Callable[[list[int]], tuple[list[Any], list[Any]]],
    objectives: ObjectiveSet,
    cache: ScoreCache | None,
    chunk_size: int,
    progress: Callable[[str, int, int], None] | None,
    report_start: bool = False,
) -> dict[str, list[float]]:
    """The one scoring loop (texts and images): per objective, score in chunks what ``cache`` lacks.

    ``inputs(indices)`` gives the (prompts, responses) of those rows; ``keys`` name the rows in the cache.
    """
    result: dict[str, list[float]] = {}
    for obj in objectives.objectives:
        known = cache.get(obj.identity, keys) if cache is not None else {}
        todo = sorted({k: i for i, k in enumerate(keys) if k not in known}.values())
        done = len(keys) - len(todo)
        if progress and report_start:
            progress(obj.name, done, len(keys))
        for start in range(0, len(todo), chunk_size):
            idx = todo[start : start + chunk_size]
            vals = obj.score(*inputs(idx))
            check_finite(vals, obj.name)
            new = {keys[i]: v for i, v in zip(idx, vals)}
            known.update(new)
            if cache is not None:
                cache.put(obj.identity, new)
            done += len(idx)
            if progress:
                progress(obj.name, done, len(keys))
        result[obj.name] = [known[k] for k in keys]
    return result


def _score_across_processes(
    prompts: list[Any],
    responses: list[str],
    keys: list[str],
    objectives: ObjectiveSet,
    cache: ScoreCache | None,
    chunk_size: int,
    progress: Callable[[str, int, int], None] | None,
) -> dict[str, list[float]]:
    """:func:`score_samples` with the missing rows split between processes; the main process owns the cache."""
    rank, size = world()
    main = rank == 0
    result: dict[str, list[float]] = {}
    for obj in objectives.objectives:
        known = cache.get(obj.identity, keys) if (main and cache is not None) else {}
        todo = broadcast(sorted({k: i for i, k in enumerate(keys) if k not in known}.values()) if main else None)
        done = len(keys) - len(todo)
        if progress and main:
            progress(obj.name, done, len(keys))
        step = chunk_size * size
        for start in range(0, len(todo), step):
            idx = todo[start : start + step][rank::size]
            error: Exception | None = None
            try:
                vals = obj.score([prompts[i] for i in idx], [responses[i] for i in idx]) if idx else []
                check_finite(vals, obj.name)
            except Exception as exc:  # noqa: BLE001 - raised on every process below, so none waits forever
                error, vals = exc, []
            parts = all_gather((str(error) if error else None, {keys[i]: float(v) for i, v in zip(idx, vals)}))
            if error is not None:
                raise error
            failed = [msg for msg, _ in parts if msg]
            if failed:
                raise DataError(f"scoring {obj.name!r} failed on another process: {failed[0]}")
            new = {k: v for _, part in parts for k, v in part.items()}
            known.update(new)
            if main and cache is not None:
                cache.put(obj.identity, new)
            done += len(new)
            if progress and main:
                progress(obj.name, done, len(keys))
        result[obj.name] = broadcast([known[k] for k in keys] if main else None)
    return result


def score_images(
    captions: Sequence[str],
    images: Sequence[Any] | Callable[[int], Any],
    objectives: ObjectiveSet,
    cache: ScoreCache | None = None,
    chunk_size: int = 256,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, list[float]]:
    """``{objective: [score per image]}``; ``images`` may be a list or ``i -> image`` (a lazy dataset)."""
    get = images if callable(images) else images.__getitem__
    keys = [pair_key(c, image_digest(get(i))) for i, c in enumerate(captions)]
    return _score_cached(keys, lambda idx: ([captions[i] for i in idx], [get(i) for i in idx]), objectives, cache,
                         chunk_size, progress)  # fmt: skip
