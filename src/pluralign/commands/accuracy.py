"""``pluralign accuracy``: pairwise accuracy of reward models or objectives on a preference-pairs file.

The share of pairs whose chosen response scores strictly higher than the rejected one (ties are misses
and are counted), with its 95% Wilson confidence interval. Compare several at once: ``--reward_model DIR``
(any model pluralign trained; NP-BTL scores for the user in ``--context``) and ``--objective SPEC`` (any
objective spec) are repeatable; with two or more, every two are compared on the same pairs: the share of
pairs on which they prefer the same response (agreement) and the correlation of their margins.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from pluralign.config import parse_args
from pluralign.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pluralign accuracy", description=__doc__)
    p.add_argument("--dataset", required=True, help="pairs: hub id or local jsonl/json/parquet/csv")
    p.add_argument("--split", default="train")
    p.add_argument("--reward_model", action="append", default=None, help="a trained reward-model dir (repeatable)")
    p.add_argument("--objective", action="append", default=None, help="an objective spec (repeatable)")
    p.add_argument("--context", default=None, help="NP-BTL: a pairs file of the user's own choices")
    p.add_argument("--prompt_column", default="prompt")
    p.add_argument("--max_pairs", type=int, default=None, help="use the first N pairs")
    p.add_argument("--skip_invalid_pairs", action="store_true", help="drop empty / identical pairs (else an error)")
    p.add_argument("--out", default=None, help="also write the results as JSON to this file")
    return p


def objective_specs(args: argparse.Namespace) -> list[dict]:
    """One objective spec per --reward_model / --objective, named after it."""
    from pluralign.objectives.set import parse_objective_spec

    specs = []
    for path in args.reward_model or []:
        spec = {"name": str(path), "type": "reward_model", "model": path}
        if args.context:
            spec["context"] = args.context
        specs.append(spec)
    for text in args.objective or []:
        spec = parse_objective_spec(text)
        spec["name"] = text if "=" not in text else spec["name"]
        specs.append(spec)
    if not specs:
        raise ConfigError("give at least one --reward_model DIR or --objective SPEC to measure")
    return specs


def run(argv: Sequence[str]) -> int:
    from pluralign.data.loading import check_prompt, response_text
    from pluralign.data.pairs import load_pairs
    from pluralign.objectives.set import build_objective
    from pluralign.objectives.trained import accuracy_of_margins, agreement, pair_margins

    args = parse_args(build_parser(), argv)
    specs = objective_specs(args)
    pairs = load_pairs(args.dataset, args.prompt_column, args.split, skip_invalid=args.skip_invalid_pairs)
    # objectives see prompts exactly as `pluralign score` feeds them (messages stay messages)
    pairs = [
        {
            "prompt": check_prompt(p["prompt"]),
            "chosen": response_text(p["chosen"]),
            "rejected": response_text(p["rejected"]),
        }
        for p in pairs[: args.max_pairs or None]
    ]
    results, margins = [], []
    for spec in specs:
        objective = build_objective(spec)
        start = time.perf_counter()
        m = pair_margins(objective.score, pairs)
        margins.append(m)
        results.append({"name": spec["name"], **accuracy_of_margins(m), "seconds": round(time.perf_counter() - start, 1)})
    agreements = [
        {"a": results[i]["name"], "b": results[j]["name"], **agreement(margins[i], margins[j])}
        for i in range(len(results))
        for j in range(i + 1, len(results))
    ]
    width = max(len(r["name"]) for r in results)
    print(f"{'model':<{width}}  accuracy  95% interval   ties  pairs")
    for r in results:
        lo, hi = r["ci95"]
        print(f"{r['name']:<{width}}  {r['pairwise_accuracy']:8.3f}  [{lo:.3f}, {hi:.3f}]  {r['ties']:4d}  {r['pairs']:5d}")
    if agreements:
        print("\nagreement (share of pairs where both prefer the same response; margin correlation)")
        for a in agreements:
            print(f"{a['a']} vs {a['b']}: {a['agreement']:.3f} (r = {a['margin_correlation']:.3f})")
    if args.out:
        report = {"dataset": args.dataset, "results": results, "agreement": agreements}
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0
