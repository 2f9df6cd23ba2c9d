"""JSON-lines files that survive a kill: written atomically, read past a last line cut short."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


def write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    """Write ``rows`` to ``path`` through a temporary file, so a kill never leaves half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)


def read_jsonl(path: Path) -> list[dict]:
    """The rows of ``path`` ([] if it does not exist); a line cut short by a kill is dropped (resume regenerates it)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
