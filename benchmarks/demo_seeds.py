"""The demo's figures over several seeds: mean and spread of hypervolume, steerability and range.

Runs ``pluralign demo --seed S --out OUT_DIR/seed_S`` for every seed (each in a fresh process, as a user
would), reads each front.json and prints, per method, mean +- standard deviation (and min..max) of the
hypervolume and of each objective's steerability and range; writes them, with every run's numbers, as JSON.
A seed seeds everything (the world's corpus, the tiny SFT model, the method's training, the evaluation),
so a rerun of a seed on the same machine gives the same numbers:

    python benchmarks/demo_seeds.py --seeds 0 1 2 --out demo_seeds.json [--method ric] [--work runs/demo_seeds]
    python benchmarks/demo_seeds.py --world hh --seeds 0 1 2 --out docs/hh_seeds.json --work runs/hh_seeds

Worlds that report per-prompt steering (chat, hh) also get, per method, the mean, min and max of each
objective's steering share and, per seed, whether equal weights were at least the base model on both.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def summarise(values: list[float | None]) -> dict[str, float | None]:
    v = np.array([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "min": float(v.min()),
            "max": float(v.max()), "n": int(v.size)}  # fmt: skip


def collect(fronts_by_seed: dict[int, dict]) -> dict[str, dict]:
    """{method: {"hypervolume": summary, "steerability": [summary per objective], "range": [...]}}."""
    out: dict[str, dict] = {}
    for data in fronts_by_seed.values():
        k = len(data["objectives"])
        for f in data["fronts"]:
            m = out.setdefault(f["method"], {"hypervolume": [], "steerability": [[] for _ in range(k)],
                                             "range": [[] for _ in range(k)], "wall_seconds": []})  # fmt: skip
            m["hypervolume"].append(f["hypervolume"])
            m["wall_seconds"].append(f.get("wall_seconds"))
            for key in ("steerability", "range"):
                for i, v in enumerate(f.get(key) or [None] * k):
                    m[key][i].append(v)
    return {
        method: {
            "hypervolume": summarise(m["hypervolume"]),
            "wall_seconds": summarise(m["wall_seconds"]),
            "steerability": [summarise(v) for v in m["steerability"]],
            "range": [summarise(v) for v in m["range"]],
        }
        for method, m in out.items()
    }


def collect_steering(fronts_by_seed: dict[int, dict], names: list[str]) -> dict[str, dict]:
    """Per method: each objective's per-prompt steering share over the seeds, and per seed whether equal
    weights were at least the base model on both objectives (front.json's ``steering``, chat and hh worlds)."""
    out: dict[str, dict] = {}
    for seed, data in fronts_by_seed.items():
        for method, s in (data.get("steering") or {}).items():
            m = out.setdefault(method, {"share": {n: [] for n in names}, "balanced": {}})
            for n in names:
                m["share"][n].append((s.get("steering_share") or {}).get(n))
            balanced = s.get("balanced_vs_base")
            m["balanced"][str(seed)] = None if balanced is None else balanced["both_at_least_base"]
    return {
        method: {"steering_share": {n: summarise(v) for n, v in m["share"].items()}, "balanced_at_least_base": m["balanced"]}
        for method, m in out.items()
    }


def fmt(s: dict) -> str:
    if s["mean"] is None:
        return "n/a"
    return f"{s['mean']:.3f} +- {s['std']:.3f} ({s['min']:.3f}..{s['max']:.3f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, required=True, help="JSON file for the summary and every run's numbers")
    ap.add_argument("--method", default="ric")
    ap.add_argument("--world", default="reviews", help="reviews | chat | hh (pluralign demo --world)")
    ap.add_argument("--work", type=Path, default=Path("runs/demo_seeds"), help="one demo output folder per seed")
    ap.add_argument("--reuse", action="store_true", help="reuse a seed's front.json when it is already there")
    args = ap.parse_args(argv)

    fronts, walls = {}, {}
    for seed in args.seeds:
        out = args.work / f"seed_{seed}"
        front = out / "front.json"
        if not (args.reuse and front.is_file()):
            t = time.time()
            cmd = [sys.executable, "-m", "pluralign.cli", "demo", "--world", args.world, "--method", args.method,
                   "--seed", str(seed), "--out", str(out)]  # fmt: skip
            print(f"demo_seeds: {' '.join(cmd[2:])}", flush=True)
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stdout[-3000:] + done.stderr[-3000:], file=sys.stderr)
                return done.returncode
            walls[seed] = time.time() - t
            print(f"demo_seeds: seed {seed} done in {walls[seed]:.1f}s", flush=True)
        fronts[seed] = json.loads(front.read_text())

    names = next(iter(fronts.values()))["objectives"]
    summary = collect(fronts)
    print(f"\n{args.method} demo over seeds {args.seeds} (mean +- std (min..max)); objectives {names}")
    for method, s in summary.items():
        print(f"  {method}: HV {fmt(s['hypervolume'])}")
        for i, n in enumerate(names):
            print(f"    {n}: steerability {fmt(s['steerability'][i])}, range {fmt(s['range'][i])}")
    steering = collect_steering(fronts, names)
    for method, s in steering.items():
        shares = ", ".join(f"{n} {fmt(v)}" for n, v in s["steering_share"].items())
        print(f"  {method}: per-prompt steering share {shares}; equal weights >= base on both: {s['balanced_at_least_base']}")
    record = {
        "world": args.world,
        "method": args.method,
        "seeds": args.seeds,
        "objectives": names,
        "summary": summary,
        "steering": steering,
        "demo_wall_seconds": walls,
        "runs": {
            str(seed): [{k: f.get(k) for k in ("method", "hypervolume", "steerability", "range", "wall_seconds")}
                        for f in data["fronts"]]  # fmt: skip
            for seed, data in fronts.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"demo_seeds: wrote {args.out}")
    return 0


if __name__ == "__main__":
    from pluralign.training.quiet import quiet_libraries

    quiet_libraries()  # pluralign's own progress only, no library bars
    raise SystemExit(main())
