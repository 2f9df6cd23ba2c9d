"""The cost of a whole front: every method that exists produces its Pareto front on the demo world.

All methods start from the same SFT model (the demo world's tiny GPT-2), train through their own demo
hook ``pluralign.methods.<m>.demo.train_on_demo`` (timed), and are evaluated by the shared pipeline
(:func:`pluralign.evaluation.pipeline.evaluate_models`) on the same prompts at every preference point of
the grid, with one hypervolume reference point. A front's ``wall_seconds`` is everything the method
needs to produce the whole front: its training (all runs: one per grid point for MORLHF, one per
objective for Rewarded Soups) plus generating and scoring the front. Building the world and its SFT
model is shared by all methods and counted for none.

Writes DIR/front.json (all fronts), DIR/pareto.png (all fronts in one plot), DIR/report.html and
DIR/front_cost.json (training and evaluation seconds apart, skipped methods, the RiC claim check), and
prints the table. The paper's claim (METHODS.md §1): RiC's wall time at most 10% of MORLHF's, with a
hypervolume at least MORLHF's.

    OMP_NUM_THREADS=1 python benchmarks/front_cost.py --out results/front_cost
    python benchmarks/front_cost.py --out /tmp/fc --methods ric morlhf --morlhf_grid_points 4 --rl_steps 10
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import time
from datetime import date
from pathlib import Path
from typing import Any

METHODS = ("ric", "morlhf", "soups", "moslim", "spo", "modpo", "npdpo")
RL_METHODS = ("morlhf", "soups")  # their demo hooks accept config overrides (steps, grid resolution)


def available(methods: list[str]) -> tuple[list[str], list[str]]:
    """Methods whose demo hook exists, and those skipped because it does not (yet)."""
    present = [m for m in methods if importlib.util.find_spec(f"pluralign.methods.{m}.demo") is not None]
    return present, [m for m in methods if m not in present]


def overrides_for(method: str, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if method in RL_METHODS and args.rl_steps is not None:
        out["max_steps"] = args.rl_steps
    if method == "morlhf" and args.morlhf_grid_points is not None:
        out["grid_points"] = args.morlhf_grid_points
    return out


def claim_check(rows: dict[str, dict[str, float]]) -> dict[str, Any] | None:
    """RiC's headline claim against MORLHF: wall time <= 10% and hypervolume >= MORLHF's."""
    if "ric" not in rows or "morlhf" not in rows:
        return None
    ric, morlhf = rows["ric"], rows["morlhf"]
    ratio = ric["wall_seconds"] / morlhf["wall_seconds"]
    return {
        "wall_ratio_ric_over_morlhf": ratio,
        "hypervolume_ric": ric["hypervolume"],
        "hypervolume_morlhf": morlhf["hypervolume"],
        "wall_within_10_percent": ratio <= 0.10,
        "hypervolume_at_least_morlhf": ric["hypervolume"] >= morlhf["hypervolume"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--world_dir", default=None, help="demo world cache (default: OUT/world); reuse to save time")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help="methods to run if they exist")
    parser.add_argument("--morlhf_grid_points", type=int, default=None, help="MORLHF grid resolution (default 10)")
    parser.add_argument("--rl_steps", type=int, default=None, help="RLOO steps per MORLHF/Soups run (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    from pluralign.demo.world import build_world
    from pluralign.evaluation.pipeline import evaluate_models, summary_table
    from pluralign.steering import load_policy

    out = Path(args.out)
    start = time.time()

    def progress(msg: str) -> None:
        print(f"[{time.time() - start:7.1f}s] {msg}", flush=True)

    world = build_world(Path(args.world_dir) if args.world_dir else out / "world", progress=progress)
    present, skipped = available(args.methods)
    if skipped:
        progress(f"skipped (no demo hook yet): {', '.join(skipped)}")
    policies, train_seconds = {}, {}
    for method in present:
        hook = importlib.import_module(f"pluralign.methods.{method}.demo")
        progress(f"{method}: training its whole front from the SFT model")
        t = time.perf_counter()
        model_dir = hook.train_on_demo(world, out / "models" / method, progress, **overrides_for(method, args))
        train_seconds[method] = time.perf_counter() - t
        policies[method] = load_policy(model_dir)
        progress(f"{method}: trained in {train_seconds[method]:.1f}s")
    fronts = evaluate_models(
        policies,
        world.base_model,
        world.eval_prompts,
        world.objectives,
        out,
        train_seconds=train_seconds,
        seed=args.seed,
        title="Whole fronts on the demo world, same SFT start",
        progress=progress,
        **world.generation_kwargs,
    )
    rows = {
        f.method: {
            "train_seconds": train_seconds.get(f.method, 0.0),
            "evaluation_seconds": f.wall_seconds - train_seconds.get(f.method, 0.0),
            "wall_seconds": f.wall_seconds,
            "hypervolume": f.hypervolume,
            "steerability": f.steerability,
        }
        for f in fronts
    }
    result = {
        "machine": f"{os.cpu_count()}-core CPU ({platform.machine()})",
        "date": date.today().isoformat(),
        "torch_threads": torch.get_num_threads(),
        "methods": rows,
        "skipped": skipped,
        "overrides": {m: overrides_for(m, args) for m in present},
        "eval_prompts": len(world.eval_prompts),
        "generation_kwargs": world.generation_kwargs,
        "ric_claim": claim_check(rows),
    }
    (out / "front_cost.json").write_text(json.dumps(result, indent=2))
    print(summary_table(fronts, world.objectives.names))
    if skipped:
        print(f"skipped (no demo hook yet): {', '.join(skipped)}")
    claim = result["ric_claim"]
    if claim:
        print(
            f"RiC / MORLHF wall time: {claim['wall_ratio_ric_over_morlhf']:.1%} (claim: <= 10%: "
            f"{'yes' if claim['wall_within_10_percent'] else 'no'}); hypervolume {claim['hypervolume_ric']:.3f} vs "
            f"{claim['hypervolume_morlhf']:.3f} (claim: at least MORLHF's: "
            f"{'yes' if claim['hypervolume_at_least_morlhf'] else 'no'})"
        )
    print(f"wrote {out / 'front.json'}, {out / 'pareto.png'}, {out / 'front_cost.json'}")
    return result


if __name__ == "__main__":
    main()
