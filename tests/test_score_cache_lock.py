"""Two processes sharing one score cache: SQLite may answer "database is locked" at once (without its
busy handler) while the other process switches a new file to WAL, and a writer has to wait for the other's
write lock. Two real processes (spawned) open the same new files at the same moment and write into
them at once; nothing they wrote may be lost or corrupted, and neither may fail."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from pluralign.objectives.scoring import ScoreCache, _retry_while_locked

FILES = 100  # new caches opened at the same moment by both processes: each is a chance for the WAL race
ROUNDS = 3  # interleaved commits per process and file


def shared_scores(round_: int) -> dict[str, float]:
    """What both processes write under the objective "shared": the same keys and values."""
    return {f"s{round_}-{j}": round_ + j / 10 for j in range(8)}


def own_scores(worker: int, round_: int) -> dict[str, float]:
    """What only ``worker`` writes, under its own objective."""
    return {f"w{worker}-{round_}-{j}": 1000.0 * worker + round_ + j / 100 for j in range(8)}


def _writer(folder: str, worker: int, barrier) -> None:
    """Open every file at the barrier (both processes at once), then write rounds of scores into all of them."""
    try:
        caches = []
        for f in range(FILES):
            barrier.wait(timeout=60)
            caches.append(ScoreCache(Path(folder) / f"c{f}.sqlite"))
        barrier.wait(timeout=60)
        for r in range(ROUNDS):
            for cache in caches:
                cache.put("shared", shared_scores(r))
                cache.put(f"own{worker}", own_scores(worker, r))
                assert cache.get("shared", list(shared_scores(r))) == shared_scores(r)  # read beside the other writer
        for cache in caches:
            cache.close()
    except BaseException:
        barrier.abort()  # the other process stops waiting at once
        raise


def test_two_processes_writing_one_new_cache_at_once_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, barrier)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    assert [p.exitcode for p in procs] == [0, 0], "a writer failed (its traceback is in the captured stderr)"
    for f in range(FILES):
        path = tmp_path / f"c{f}.sqlite"
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        cache = ScoreCache(path)
        shared = {k: v for r in range(ROUNDS) for k, v in shared_scores(r).items()}
        assert cache.get("shared", list(shared)) == shared
        for w in (0, 1):
            own = {k: v for r in range(ROUNDS) for k, v in own_scores(w, r).items()}
            assert cache.get(f"own{w}", list(own)) == own
        assert cache.count() == len(shared) + 2 * ROUNDS * 8  # nothing lost, nothing extra
        cache.close()


def test_locked_set_up_is_retried_until_it_succeeds():
    calls = []

    def op():
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "done"

    assert _retry_while_locked(op, seconds=5) == "done" and len(calls) == 3


def test_other_sqlite_errors_and_a_lock_past_the_deadline_still_raise():
    def broken():
        raise sqlite3.OperationalError("no such table: scores")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        _retry_while_locked(broken, seconds=5)

    def locked():
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _retry_while_locked(locked, seconds=0.2)


def test_two_caches_on_one_new_file_share_their_scores(tmp_path):
    a, b = ScoreCache(tmp_path / "c.sqlite"), ScoreCache(tmp_path / "c.sqlite")
    a.put("len", {"k": 1.5})
    assert b.get("len", ["k"]) == {"k": 1.5}
