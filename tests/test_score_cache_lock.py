"""Two processes opening one new score cache at once: SQLite may answer "database is locked" at once
(without its busy handler) while the other switches the file to WAL; the set-up waits and retries."""

from __future__ import annotations

import sqlite3

import pytest

from pluralign.data.scoring import ScoreCache, _retry_while_locked


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
