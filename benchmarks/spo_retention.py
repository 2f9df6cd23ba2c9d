"""Does SPO keep dimension 1 after round 2 better than plain sequential DPO?  And what does a round cost in memory?

On the demo world (sentiment, then conciseness; the two conflict), train the two rounds with the same
settings for sequential DPO (alpha = 0: round 2 is plain DPO from and against round 1), SPO (alpha = 1,
the headline row) and SPO with larger alphas (``--sweep``). After round 2, each dimension's preference accuracy is measured on held-out pairs
with the implicit reward of the final model against the starting model, log pi_2/pi_0 (chosen ranked
above rejected), and on generations (mean objective score over the world's eval prompts).

``--memory`` also measures the peak resident memory (ru_maxrss) of SPO with 1, 2 and 3 rounds, each in
its own process, on a wider random GPT-2 so that model memory dominates the interpreter's.

    python benchmarks/spo_retention.py --out spo_retention.json [--memory] [--work-dir DIR]
    python benchmarks/spo_retention.py --memory-only --out spo_memory.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pluralign.generation.batched import generate_batched
from pluralign.methods.spo.config import SPOConfig
from pluralign.methods.spo.trainer import train_spo
from pluralign.models.loading import load_causal_lm, load_tokenizer
from pluralign.objectives import ObjectiveSet
from pluralign.training.pair_logps import pair_logps
from pluralign.worlds.reviews.dpo import demo_settings
from pluralign.worlds.reviews.world import build_world


def split_pairs(world, name: str, n_train: int, n_eval: int) -> tuple[list[dict], list[dict]]:
    pairs = world.pairs(name)
    return pairs[:n_train], pairs[n_train : n_train + n_eval]


def preference_accuracy(model: str, start: str, pairs: list[dict], args, tokenizer) -> float:
    """Share of pairs whose implicit reward log pi/pi_0 ranks chosen above rejected."""
    lp, lp0 = pair_logps(model, pairs, args, tokenizer), pair_logps(start, pairs, args, tokenizer)
    reward = lp - lp0
    return float(np.mean(reward[:, 0] > reward[:, 1]))


def generation_scores(model_dir: str, world, tokenizer) -> dict[str, float]:
    """Mean objective scores of generations for the world's eval prompts (its sampling settings, seed 0)."""
    torch.manual_seed(0)
    model = load_causal_lm(model_dir)
    texts = generate_batched(model, tokenizer, world.eval_prompts, 32, **world.generation_kwargs)
    scores = world.objectives.score(world.eval_prompts, texts)
    return {name: round(float(np.mean(v)), 4) for name, v in scores.items()}


def run_alpha(world, alpha: float, train: dict, held_out: dict, work_dir: Path, tokenizer) -> dict:
    """Two rounds (sentiment, conciseness) with margin weight ``alpha``; accuracies after each round.

    Round 1 does not depend on alpha, so a finished round 1 of another alpha is reused (SPO resumes)."""
    dims = list(train)
    out = work_dir / f"alpha{alpha:g}"
    done = sorted(work_dir.glob("alpha*/round_1_sentiment/pluralign.json"))
    if done and not (out / "round_1_sentiment").exists():
        shutil.copytree(done[0].parent, out / "round_1_sentiment")
    config = SPOConfig(output_dir=str(out), alpha=[alpha], **demo_settings(world))
    t = time.time()
    train_spo(config, train, progress=print)
    row: dict = {"alpha": alpha, "train_seconds": round(time.time() - t, 1)}
    for stage, round_dir in (("after_round1", "round_1_sentiment"), ("final", "round_2_conciseness")):
        model_dir = str(out / round_dir)
        acc = {
            f"dim{i}_accuracy": preference_accuracy(model_dir, world.base_model, held_out[d], config, tokenizer)
            for i, d in enumerate(dims, start=1)
        }
        if stage == "final":
            row.update(acc)
        else:
            row[stage] = acc
        row[f"generation_{stage}"] = generation_scores(model_dir, world, tokenizer)
    return row


def run_retention(args: argparse.Namespace) -> dict:
    world = build_world(args.work_dir / "world", progress=print)
    dims = world.objectives.names  # sentiment, conciseness
    train, held_out = {}, {}
    for name in dims:
        train[name], held_out[name] = split_pairs(world, name, args.pairs, args.eval_pairs)
    tokenizer = load_tokenizer(world.base_model)
    alphas = [0.0, args.alpha, *[a for a in args.sweep if a not in (0.0, args.alpha)]]
    rows = {a: run_alpha(world, a, train, held_out, args.work_dir, tokenizer) for a in alphas}
    return {
        "spo": rows[args.alpha],
        "sequential_dpo": rows[0.0],
        "alpha_sweep": list(rows.values()),
        "sft": {"generation": generation_scores(world.base_model, world, tokenizer)},
        "settings": {
            "dimensions": dims,
            "train_pairs_per_dimension": args.pairs,
            "held_out_pairs_per_dimension": args.eval_pairs,
            **{k: v for k, v in demo_settings(world).items() if k in ("learning_rate", "beta", "num_train_epochs")},
        },
    }


def rounds_pairs(world, n_rounds: int, n_pairs: int) -> dict[str, list[dict]]:
    """Sentiment, conciseness and (third) readability pairs from the world's training responses."""
    dims = {name: world.pairs(name, n_pairs) for name in world.objectives.names}
    if n_rounds > 2:
        readability = ObjectiveSet.from_specs(["readability"])
        scores = readability.score([s["prompt"] for s in world.train], [s["response"] for s in world.train])[
            "readability"
        ]
        groups: dict[str, list[tuple[str, float]]] = {}
        for s, v in zip(world.train, scores):
            groups.setdefault(s["prompt"], []).append((s["response"], v))
        pairs = [
            {"prompt": p, "chosen": a[0] if a[1] > b[1] else b[0], "rejected": b[0] if a[1] > b[1] else a[0]}
            for p, group in groups.items()
            for a, b in itertools.combinations(group, 2)
            if a[1] != b[1]
        ]
        random.Random(0).shuffle(pairs)
        dims["readability"] = pairs[:n_pairs]
    return dict(itertools.islice(dims.items(), n_rounds))


def memory_child(n_rounds: int, work_dir: Path) -> None:
    """Train ``n_rounds`` SPO rounds on a wide random GPT-2 and print this process's peak RSS (MiB)."""
    from pluralign.worlds.reviews.tiny_lm import build_tiny_gpt

    world = build_world(work_dir / "world", progress=None)
    wide = work_dir / "wide_model"
    if not (wide / "model.safetensors").is_file():
        build_tiny_gpt(wide, load_tokenizer(world.base_model), n_layer=6, n_embd=512, n_positions=160)
    settings = {**demo_settings(world), "model_name_or_path": str(wide), "per_device_train_batch_size": 8}
    with tempfile.TemporaryDirectory() as tmp:
        config = SPOConfig(output_dir=tmp, alpha=[1.0], **settings)
        train_spo(config, rounds_pairs(world, n_rounds, 64), progress=None)
    print(json.dumps({"rounds": n_rounds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_memory(work_dir: Path, repeats: int = 1) -> dict[str, dict[str, float]]:
    """Peak RSS (MiB) of 1, 2 and 3 SPO rounds, each run ``repeats`` times in a fresh process."""
    peaks: dict[str, list[float]] = {"1": [], "2": [], "3": []}
    for _ in range(repeats):
        for n in (1, 2, 3):
            cmd = [sys.executable, __file__, "--memory-child", str(n), "--work-dir", str(work_dir)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-2000:])
            line = [x for x in proc.stdout.splitlines() if x.startswith('{"rounds"')][-1]
            peaks[str(n)].append(round(json.loads(line)["peak_rss_mib"], 1))
    return {n: {"runs": v, "median": float(np.median(v)), "min": min(v)} for n, v in peaks.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "pluralign_spo_retention")
    parser.add_argument("--pairs", type=int, default=1024, help="training pairs per dimension")
    parser.add_argument("--eval-pairs", type=int, default=512, help="held-out pairs per dimension")
    parser.add_argument("--alpha", type=float, default=1.0, help="SPO's margin weight for the headline row")
    parser.add_argument("--sweep", type=float, nargs="*", default=[3.0, 10.0], help="more alphas to report")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory of 1, 2 and 3 SPO rounds")
    parser.add_argument("--memory-repeats", type=int, default=3, help="runs per round count (median reported)")
    parser.add_argument("--memory-only", action="store_true", help="skip the retention runs")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if args.memory_child:
        memory_child(args.memory_child, args.work_dir)
        return
    if args.memory_only:
        results = {"peak_rss_mib": run_memory(args.work_dir, args.memory_repeats)}
        print("peak RSS (MiB) by number of SPO rounds:", json.dumps(results["peak_rss_mib"]))
        if args.out:
            args.out.write_text(json.dumps(results, indent=2))
        return
    results = run_retention(args)
    if args.memory:
        results["peak_rss_mib"] = run_memory(args.work_dir, args.memory_repeats)
    print(f"\n{'run':<16}{'alpha':>6}{'dim1 acc':>10}{'dim2 acc':>10}{'sentiment':>11}{'conciseness':>13}")
    rows = [("sequential_dpo", results["sequential_dpo"])] + [("spo", r) for r in results["alpha_sweep"] if r["alpha"]]
    for label, r in rows:
        g = r["generation_final"]
        print(f"{label:<16}{r['alpha']:>6g}{r['dim1_accuracy']:>10.3f}{r['dim2_accuracy']:>10.3f}"
              f"{g['sentiment']:>11.3f}{g['conciseness']:>13.2f}")  # fmt: skip
    g = results["sft"]["generation"]
    print(f"{'sft':<16}{'':>6}{'':>10}{'':>10}{g['sentiment']:>11.3f}{g['conciseness']:>13.2f}")
    if "peak_rss_mib" in results:
        print("peak RSS (MiB) by number of SPO rounds:", json.dumps(results["peak_rss_mib"]))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
