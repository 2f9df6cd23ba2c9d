"""Files shipped inside the package (real data for the built-in worlds, tests and benchmarks)."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"


def hh_harmless_pairs() -> Path:
    """1,000 real HH-RLHF harmless-base pairs (prompt / chosen / rejected; MIT, see data/LICENSE-hh-rlhf)."""
    return DATA_DIR / "hh_harmless_1000.jsonl"
