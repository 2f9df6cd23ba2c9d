"""``pluralign score``: score a dataset with K objectives; writes score_<name> columns and statistics.

Scores go through a SQLite cache in ``--out``: an interrupted run resumes where it stopped. Under
``accelerate launch --num_processes N`` the rows are split between the N processes and the main one
writes the cache and the results.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from pluralign.config import parse_args
from pluralign.data.loading import load_any, to_samples
from pluralign.models.state import init_processes
from pluralign.objectives import ObjectiveSet
from pluralign.objectives.scoring import ScoreCache, score_samples


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pluralign score", description=__doc__)
    p.add_argument("--dataset", required=True, help="hub id or local jsonl/json/parquet/csv")
    p.add_argument("--split", default="train")
    p.add_argument("--objective", action="append", default=None, help="objective spec (repeatable)")
    p.add_argument("--out", required=True, help="output folder (scored.jsonl, objectives.json, cache)")
    p.add_argument("--prompt_column", default="prompt")
    p.add_argument("--response_column", default=None)
    p.add_argument("--response_marker", default="\n\nAssistant:")
    p.add_argument("--batch_size", type=int, default=256, help="pairs per committed scoring chunk")
    return p


def run(argv: Sequence[str]) -> int:
    args = parse_args(build_parser(), argv)
    rank, _ = init_processes()
    objectives = ObjectiveSet.from_specs(args.objective or [])
    samples = to_samples(
        load_any(args.dataset, split=args.split),
        prompt_column=args.prompt_column,
        response_column=args.response_column,
        response_marker=args.response_marker,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t = time.time()

    def progress(name: str, done: int, total: int) -> None:  # called on the main process only
        print(f"\rscore: {name}: {done}/{total}", end="\n" if done == total else "", flush=True)

    scores = score_samples(samples, objectives, ScoreCache(out / "score_cache.sqlite"), args.batch_size, progress)
    if rank != 0:
        return 0
    objectives.fit_stats(scores)
    objectives.save(out / "objectives.json")
    with (out / "scored.jsonl").open("w") as f:
        for i, s in enumerate(samples):
            f.write(json.dumps({**s, **{f"score_{n}": scores[n][i] for n in objectives.names}}) + "\n")
    print(f"pluralign: scored {len(samples)} samples in {time.time() - t:.1f}s -> {out / 'scored.jsonl'}")
    for n in objectives.names:
        st = objectives.stats[n]
        print(f"  {n}: mean {st.mean:.4g}  std {st.std:.4g}  min {st.min:.4g}  max {st.max:.4g}")
    return 0
