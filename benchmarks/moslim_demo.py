"""MOSLIM on the demo world: wall time, per-head RM accuracy, the front over the preference grid, steerability.

Steerability (METHODS.md §6) = Spearman correlation between w_i and the achieved mean of objective i over
the 11-point grid, measured with the world's real scorers (VADER sentiment, minus word count) on the
world's evaluation prompts. With ``--ric`` RiC's demo is trained on the same world for the wall-time
comparison.

    .venv/bin/python benchmarks/moslim_demo.py --world runs/demo_world --out runs/moslim_demo.json [--ric]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any


def front(policy: Any, world: Any, grid: list[list[float]], seed: int = 0) -> list[dict[str, Any]]:
    """Mean raw score per objective at each preference of the grid."""
    import numpy as np
    import torch

    points = []
    for w in grid:
        torch.manual_seed(seed)
        responses = policy.generate(world.eval_prompts, preference=w, **world.generation_kwargs)
        scores = world.objectives.score(world.eval_prompts, responses)
        points.append({"preference": w, "scores": [float(np.mean(scores[n])) for n in world.objectives.names]})
    return points


def steerability(points: list[dict[str, Any]], names: list[str]) -> dict[str, float | None]:
    """Spearman(w_i, achieved mean of objective i) per objective (``pluralign.evaluation.metrics``)."""
    from pluralign.evaluation.metrics import steerability as spearman_per_objective

    rho = spearman_per_objective([p["preference"] for p in points], [p["scores"] for p in points])
    return dict(zip(names, rho))


def _fmt(x: float | None) -> str:
    return "undefined" if x is None else f"{x:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="runs/demo_world", help="demo world folder (built if missing)")
    parser.add_argument("--work", default="runs/moslim_demo", help="where the trained models go")
    parser.add_argument("--out", default=None, help="write the results JSON here")
    parser.add_argument("--ric", action="store_true", help="also train RiC's demo on the same world and time it")
    parser.add_argument("--max_steps", type=int, default=None, help="override the demo's GRPO steps")
    parser.add_argument("--algorithm", default=None, help="grpo (demo default) | rloo | online_dpo")
    parser.add_argument("--set", nargs="*", default=[], help="more RL overrides as key=JSON, e.g. learning_rate=3e-4")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from pluralign import load_policy
    from pluralign.preferences.weights import preference_grid
    from pluralign.worlds.reviews.moslim import train_on_demo
    from pluralign.worlds.reviews.world import build_world

    world = build_world(args.world, progress=print)
    names = world.objectives.names
    grid = preference_grid(len(names))
    work = Path(args.work)
    overrides: dict[str, Any] = {}
    if args.max_steps:
        overrides["max_steps"] = args.max_steps
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    if args.algorithm and args.algorithm != "grpo":
        overrides["algorithm"] = args.algorithm

    t = time.time()
    model_dir = train_on_demo(world, work / "model", progress=print, **overrides)
    wall = time.time() - t
    run = json.loads((model_dir / "moslim_run.json").read_text())
    moslim_points = front(load_policy(model_dir), world, grid)
    results: dict[str, Any] = {
        "machine": "2-core CPU",
        "objectives": names,
        "moslim": {
            "wall_seconds": wall,
            "rl_wall_seconds": run["wall_seconds"],
            "rl_steps": run["steps"],
            "reward_first_last": [run["first_reward"], run["last_reward"]],
            "reward_model_heads": run["reward_model"]["heads"],
            "reward_model_wall_seconds": run["reward_model"]["wall_seconds"],
            "points": moslim_points,
            "steerability": steerability(moslim_points, names),
        },
    }
    if args.ric:
        from pluralign.worlds.reviews.ric import train_on_demo as ric_train

        t = time.time()
        ric_dir = ric_train(world, work / "ric_model", progress=print)
        ric_wall = time.time() - t
        ric_points = front(load_policy(ric_dir), world, grid)
        results["ric"] = {
            "wall_seconds": ric_wall,
            "points": ric_points,
            "steerability": steerability(ric_points, names),
        }

    print(f"\n{'method':<8} {'wall s':>8} " + " ".join(f"{'steer ' + n:>18}" for n in names))
    for method in ("moslim", "ric"):
        if method in results:
            r = results[method]
            print(
                f"{method:<8} {r['wall_seconds']:>8.1f} " + " ".join(f"{_fmt(r['steerability'][n]):>18}" for n in names)
            )
    print("\nreward-model heads (held-out accuracy vs majority class):")
    for n, m in results["moslim"]["reward_model_heads"].items():
        print(f"  {n:<12} {m['accuracy']:.3f} vs {m['majority_baseline']:.3f} (n={m['n']})")
    print("\nMOSLIM front (w, mean scores):")
    for p in moslim_points:
        print("  " + " ".join(f"{w:.1f}" for w in p["preference"]) + "  " + " ".join(f"{s:8.3f}" for s in p["scores"]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    from pluralign.training.quiet import quiet_libraries

    quiet_libraries()  # pluralign's own progress only, no library bars
    main()
