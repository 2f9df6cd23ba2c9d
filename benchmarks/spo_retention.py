"""Does SPO keep dimension 1 after round 2 better than plain sequential DPO?  And what does a round cost in memory?

Two worlds, two rounds each, trained with the same settings for every alpha: alpha = 0 is sequential DPO
(round 2 is plain DPO from and against round 1), the others SPO; round 1 does not depend on alpha and is
trained once.

- ``--world reviews`` (default): the demo world's tiny GPT-2, sentiment then conciseness (they conflict);
  headline alpha 30, chosen by this benchmark's sweep (docs/dpo_family.md: why alpha = 1 keeps nothing);
- ``--world hh``: SmolLM2-135M-Instruct with LoRA, the chat world's DPO settings (r 16 on q/k/v/o, lr
  5e-4, beta 0.1, batch 8, max_length 192, 1 epoch). Round 1 (``harmless``): the shipped HH-RLHF harmless
  pairs as the humans ranked them. Round 2 (``helpful``): other training pairs of the same split, their
  two responses ranked by MiniLM relevance to the request (the hh world's ``helpful``), which reverses the
  human choice on most of them. Pairs whose chat-rendered prompt is over ``--max-prompt-tokens`` are left
  out, so max_length keeps most of every response.

Reported on held-out pairs (hh: the same held-out pairs, once as the humans ranked them, once ranked by
relevance): each dimension's preference accuracy of the implicit reward log pi/pi_0 (chosen ranked above
rejected) after round 1 and after round 2; and on generations for the world's held-out prompts (hh:
greedy answers) the objectives' mean scores of the start, round 1 and every round 2, with the
hypervolume of each model as one point in z-units of the start's outputs (reference -3 per objective).
SPO and sequential DPO give one unsteered model each: steerability does not apply.

``--memory`` also measures the peak resident memory (ru_maxrss) of SPO with 1, 2 and 3 rounds, each in
its own process, on a wider random GPT-2 so that model memory dominates the interpreter's.

    python benchmarks/spo_retention.py --out spo_retention.json [--memory] [--work-dir DIR]
    python benchmarks/spo_retention.py --world hh --out spo_hh.json [--work-dir DIR]
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pluralign.evaluation.metrics import DEFAULT_REFERENCE_Z, hypervolume
from pluralign.generation.batched import generate_batched
from pluralign.methods.spo.config import SPOConfig
from pluralign.methods.spo.trainer import round_dir_name, train_spo
from pluralign.models.builtin import resolve_model
from pluralign.models.loading import load_causal_lm, load_tokenizer
from pluralign.objectives import ObjectiveSet, ObjectiveStats
from pluralign.objectives.scoring import ScoreCache
from pluralign.training.pair_logps import implicit_reward_margins
from pluralign.worlds.reviews.dpo import demo_settings
from pluralign.worlds.reviews.world import build_world

# per world: training and held-out pairs per dimension, the headline alpha and the other alphas to report.
# reviews: the smallest alpha of the sweep that keeps dimension 1 at least 5 points over sequential DPO
# by a clear margin (alpha 10 gives +5.1, 30 gives +10.2: docs/dpo_family.md)
WORLD_DEFAULTS = {
    "reviews": {"pairs": 1024, "eval_pairs": 512, "alpha": 30.0, "sweep": [1.0, 3.0, 10.0, 100.0]},
    "hh": {"pairs": 64, "eval_pairs": 80, "alpha": 30.0, "sweep": []},
}


DEFAULT_WORK_DIR = Path(tempfile.gettempdir()) / "pluralign_spo_retention"


@dataclass
class Setup:
    """One world's two rounds: its pairs per dimension (training and held out) and DPO settings."""

    world: Any  # base_model, eval_prompts, objectives, generation_kwargs
    dims: list[str]
    train: dict[str, list[dict]]
    held_out: dict[str, list[dict]]
    settings: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


T0 = time.time()


def log(msg: str) -> None:
    """Progress with the seconds since the benchmark started (what each stage costs)."""
    print(f"[{time.time() - T0:6.0f}s] {msg}", flush=True)


def split_pairs(world, name: str, n_train: int, n_eval: int) -> tuple[list[dict], list[dict]]:
    pairs = world.pairs(name)
    return pairs[:n_train], pairs[n_train : n_train + n_eval]


def reviews_setup(args: argparse.Namespace) -> Setup:
    world = build_world(args.work_dir / "world", progress=log)
    dims = world.objectives.names  # sentiment, conciseness
    train, held_out = {}, {}
    for name in dims:
        train[name], held_out[name] = split_pairs(world, name, args.pairs, args.eval_pairs)
    return Setup(world, dims, train, held_out, demo_settings(world))


def hh_setup(args: argparse.Namespace) -> Setup:
    """harmless (human choices) then helpful (relevance ranking) on disjoint training pairs of the hh split."""
    from pluralign.generation.prompts import render_prompt
    from pluralign.objectives.scoring import score_samples
    from pluralign.worlds.chat.demo import dpo_settings
    from pluralign.worlds.chat.hh import HARMLESS, HELPFUL, HH, hh_split
    from pluralign.worlds.chat.world import build_chat_world

    # n_prompts sizes RiC's offline data, which this benchmark does not use
    overrides = {"base_model": args.base_model} if args.base_model else {}
    settings = HH.settings(seed=args.seed, n_eval_prompts=args.eval_prompts, n_prompts=32, pairs=args.pairs_file, **overrides)
    world = build_chat_world(args.work_dir / "world", progress=log, settings=settings, spec=HH)
    tok = load_tokenizer(world.base_model)
    rng = random.Random(args.seed)

    def usable(pairs: list[dict]) -> list[dict]:
        rows = [{**p, "messages": p["prompt"], "prompt": render_prompt(tok, p["prompt"])} for p in pairs]
        rows = [r for r in rows if len(tok(r["prompt"], add_special_tokens=False)["input_ids"]) <= args.max_prompt_tokens]
        rng.shuffle(rows)
        return rows

    train, held = (usable(p) for p in hh_split(settings))
    relevance = ObjectiveSet([world.objectives[HELPFUL]])
    cache = ScoreCache(args.work_dir / "world" / "score_cache.sqlite")

    def by_relevance(pairs: list[dict], n: int) -> tuple[list[dict], float]:
        """The first ``n`` pairs with a relevance gap, chosen = more relevant; the share that reverses the humans."""
        rows = [{"prompt": p["messages"], "response": r} for p in pairs for r in (p["chosen"], p["rejected"])]
        s = score_samples(rows, relevance, cache)[HELPFUL]
        out, reversed_ = [], 0
        for k, p in enumerate(pairs):
            if len(out) == n:
                break
            gap = s[2 * k] - s[2 * k + 1]
            if abs(gap) > 1e-6:
                out.append(p if gap > 0 else {**p, "chosen": p["rejected"], "rejected": p["chosen"]})
                reversed_ += gap < 0
        return out, reversed_ / max(len(out), 1)

    def plain(pairs: list[dict]) -> list[dict]:
        return [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs]

    round1, rest = train[: args.pairs], train[args.pairs :]
    round2, conflict_train = by_relevance(rest, args.pairs)
    held1 = held[: args.eval_pairs]
    held2, conflict_held = by_relevance(held1, len(held1))
    info = {
        "usable_pairs": {"train": len(train), "held_out": len(held)},
        "max_prompt_tokens": args.max_prompt_tokens,
        "round2_reverses_human_choice": {"train": round(conflict_train, 3), "held_out": round(conflict_held, 3)},
        "eval_prompts": len(world.eval_prompts),
    }
    log(f"spo hh: round 1 {len(round1)} human harmless pairs, round 2 {len(round2)} relevance-ranked pairs "
          f"({conflict_train:.0%} reverse the human choice); held out {len(held1)} / {len(held2)}")  # fmt: skip
    return Setup(
        world,
        [HARMLESS, HELPFUL],
        {HARMLESS: plain(round1), HELPFUL: plain(round2)},
        {HARMLESS: plain(held1), HELPFUL: plain(held2)},
        dpo_settings(world),
        info,
    )


def preference_accuracy(model: str, start: str, pairs: list[dict], args, tokenizer, cache=None) -> dict[str, float]:
    """Share of pairs whose implicit reward log pi/pi_0 ranks chosen above rejected (pairs TRL drops count
    wrong): over all pairs, and apart over those whose chosen response has more tokens and those whose
    has fewer. A round that learnt a length preference ranks nearly every pair by length, which the overall
    figure mixes with the dimension; ``length_balanced`` (the mean of the two) weighs both kinds alike."""
    right = implicit_reward_margins(model, start, pairs, args, tokenizer, cache) > 0
    n_tokens = [[len(tokenizer(p[k], add_special_tokens=False)["input_ids"]) for k in ("chosen", "rejected")] for p in pairs]
    longer, shorter = (np.array([op(c, r) for c, r in n_tokens], dtype=bool) for op in (int.__gt__, int.__lt__))
    by = {k: float(np.mean(right[m])) if m.any() else float("nan") for k, m in (("chosen_longer", longer), ("chosen_shorter", shorter))}
    return {
        "accuracy": float(np.mean(right)),
        **by,
        "length_balanced": float(np.nanmean(list(by.values()))),
        "share_chosen_longer": float(np.mean(longer)),
    }


def generation_scores(model_dir: str, world, tokenizer) -> dict[str, list[float]]:
    """Per-sample objective scores of generations for the world's eval prompts (its generation settings, seed 0)."""
    torch.manual_seed(0)
    model = load_causal_lm(model_dir)
    texts = generate_batched(model, tokenizer, world.eval_prompts, 32, **world.generation_kwargs)
    return {name: [float(x) for x in v] for name, v in world.objectives.score(world.eval_prompts, texts).items()}


def means(scores: dict[str, list[float]]) -> dict[str, float]:
    return {name: round(float(np.mean(v)), 4) for name, v in scores.items()}


def run_alpha(setup: Setup, alpha: float, work_dir: Path, tokenizer, cache: ScoreCache, first: bool) -> dict:
    """Two rounds with margin weight ``alpha``; accuracies after round 2 (and after round 1 when ``first``).

    Round 1 does not depend on alpha, so a finished round 1 of another alpha is reused (SPO resumes)."""
    dims, world = setup.dims, setup.world
    start = resolve_model(world.base_model)
    out = work_dir / f"alpha{alpha:g}"
    round_dirs = [round_dir_name(n, d) for n, d in enumerate(dims, start=1)]
    done = sorted(work_dir.glob(f"alpha*/{round_dirs[0]}/pluralign.json"))
    if done and not (out / round_dirs[0]).exists():
        shutil.copytree(done[0].parent, out / round_dirs[0])
    config = SPOConfig(output_dir=str(out), alpha=[alpha], **setup.settings)
    t = time.time()
    train_spo(config, setup.train, progress=log)
    row: dict = {"alpha": alpha, "train_seconds": round(time.time() - t, 1)}
    t = time.time()
    stages = [("after_round1", round_dirs[0])] if first else []
    for stage, round_dir in [*stages, ("final", round_dirs[1])]:
        model_dir = str(out / round_dir)
        acc = {}
        for i, d in enumerate(dims, start=1):
            a = preference_accuracy(model_dir, start, setup.held_out[d], config, tokenizer, cache)
            acc[f"dim{i}_accuracy"] = a.pop("accuracy")
            acc[f"dim{i}_by_length"] = a
        scores = generation_scores(model_dir, world, tokenizer)
        if stage == "final":
            row.update(acc)
        else:
            row[stage] = acc
        row[f"generation_{stage}"] = means(scores)
    row["eval_seconds"] = round(time.time() - t, 1)
    log(f"alpha {alpha:g}: evaluated in {row['eval_seconds']:.0f}s")
    return row


def add_hypervolumes(results: dict, names: list[str]) -> None:
    """Each model's generation means as one point, in z-units of the start's outputs (reference -3 each)."""
    start = results["start"]
    norm = {n: ObjectiveStats.fit(start["scores"][n], n) for n in names}

    def hv(point: dict[str, float]) -> float:
        z = [float(norm[n].z(np.array([point[n]]))[0]) for n in names]
        return round(hypervolume(np.array([z]), [DEFAULT_REFERENCE_Z] * len(names)), 3)

    start["hypervolume"] = hv(start["generation"])
    results["round1"]["hypervolume"] = hv(results["round1"]["generation"])
    for r in results["alpha_sweep"]:
        r["hypervolume"] = hv(r["generation_final"])


def run_retention(args: argparse.Namespace) -> dict:
    t0 = time.time()
    setup = (hh_setup if args.world == "hh" else reviews_setup)(args)
    world_seconds = round(time.time() - t0, 1)
    tokenizer = load_tokenizer(setup.world.base_model)
    cache = ScoreCache(args.work_dir / "eval_logps.sqlite")
    alphas = list(dict.fromkeys([0.0, args.alpha, *args.sweep]))
    rows = {}
    for k, a in enumerate(alphas):
        rows[a] = run_alpha(setup, a, args.work_dir, tokenizer, cache, first=k == 0)
    t = time.time()
    start_scores = generation_scores(setup.world.base_model, setup.world, tokenizer)
    names = setup.world.objectives.names
    first = rows[0.0]
    results = {
        "world": args.world,
        "dimensions": setup.dims,
        "spo": rows[args.alpha],
        "sequential_dpo": rows[0.0],
        "alpha_sweep": list(rows.values()),
        "round1": {**first.pop("after_round1"), "generation": first.pop("generation_after_round1")},
        "start": {"model": setup.world.base_model, "generation": means(start_scores), "scores": start_scores},
        "steerability": "n/a: SPO and sequential DPO each give one unsteered model",
        "settings": {
            "train_pairs_per_dimension": {d: len(p) for d, p in setup.train.items()},
            "held_out_pairs_per_dimension": {d: len(p) for d, p in setup.held_out.items()},
            **{k: v for k, v in setup.settings.items() if k in ("learning_rate", "beta", "num_train_epochs",
                                                                 "per_device_train_batch_size", "max_length", "lora_r")},
            **setup.info,
        },  # fmt: skip
    }
    add_hypervolumes(results, names)
    results["start"].pop("scores")
    results["seconds"] = {"world": world_seconds, "start_generation": round(time.time() - t, 1),
                          **{f"alpha{r['alpha']:g}": {"train": r["train_seconds"], "eval": r["eval_seconds"]}
                             for r in rows.values()}, "total": round(time.time() - t0, 1)}  # fmt: skip
    return results


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
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--world", choices=sorted(WORLD_DEFAULTS), default="reviews", help="which world")
    parser.add_argument("--pairs", type=int, help="training pairs per dimension (reviews 1024, hh 64)")
    parser.add_argument("--eval-pairs", type=int, help="held-out pairs per dimension (reviews 512, hh 80)")
    parser.add_argument("--alpha", type=float, help="SPO's margin weight for the headline row (30)")
    parser.add_argument("--sweep", type=float, nargs="*", help="more alphas to report (reviews 1 3 10 100; hh none)")
    parser.add_argument("--eval-prompts", type=int, default=16, help="hh: held-out prompts for generations")
    parser.add_argument("--max-prompt-tokens", type=int, default=96, help="hh: longest chat-rendered prompt kept")
    parser.add_argument("--seed", type=int, default=0, help="hh: the world's split, reward model and training")
    parser.add_argument("--base-model", help="hh: the starting model (default SmolLM2-135M-Instruct)")
    parser.add_argument("--pairs-file", help="hh: preference pairs instead of the shipped HH harmless pairs")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory of 1, 2 and 3 SPO rounds")
    parser.add_argument("--memory-repeats", type=int, default=3, help="runs per round count (median reported)")
    parser.add_argument("--memory-only", action="store_true", help="skip the retention runs")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for key, value in WORLD_DEFAULTS[args.world].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.world == "hh" and args.work_dir == DEFAULT_WORK_DIR:
        args.work_dir = DEFAULT_WORK_DIR.with_name(DEFAULT_WORK_DIR.name + "_hh")
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
    print_table(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


def print_table(results: dict) -> None:
    names = list(results["start"]["generation"])
    d1, d2 = results["dimensions"]
    head = f"{'model':<16}{'alpha':>6}{'dim1 acc':>10}{'len-bal':>9}{'dim2 acc':>10}" + "".join(f"{n[:12]:>14}" for n in names)
    print(f"\ndim1 = {d1}, dim2 = {d2} (held-out preference accuracy of log pi/pi_0; len-bal: length-balanced); "
          "generations: mean scores, HV in z-units of the start's")  # fmt: skip
    print(head + f"{'HV':>8}")

    def line(label: str, alpha: str, r: dict | None, gen: dict, hv: float) -> None:
        acc = ["", "", ""] if r is None else [f"{r['dim1_accuracy']:.3f}", f"{r['dim1_by_length']['length_balanced']:.3f}",
                                              f"{r['dim2_accuracy']:.3f}"]  # fmt: skip
        print(f"{label:<16}{alpha:>6}{acc[0]:>10}{acc[1]:>9}{acc[2]:>10}" + "".join(f"{gen[n]:>14.3f}" for n in names)
              + f"{hv:>8.2f}")  # fmt: skip

    s = results["start"]
    line("start", "", None, s["generation"], s["hypervolume"])
    r1 = results["round1"]
    line("round 1", "", r1, r1["generation"], r1["hypervolume"])
    for r in results["alpha_sweep"]:
        label = "sequential DPO" if r["alpha"] == 0 else "SPO"
        line(label, f"{r['alpha']:g}", r, r["generation_final"], r["hypervolume"])
    spo, seq = results["spo"], results["sequential_dpo"]
    print(f"retention: {d1} accuracy after round 2, SPO (alpha {spo['alpha']:g}) {spo['dim1_accuracy']:.3f} vs "
          f"sequential DPO {seq['dim1_accuracy']:.3f} ({100 * (spo['dim1_accuracy'] - seq['dim1_accuracy']):+.1f} points; "
          f"{r1['dim1_accuracy']:.3f} after round 1)")  # fmt: skip
    if "peak_rss_mib" in results:
        print("peak RSS (MiB) by number of SPO rounds:", json.dumps(results["peak_rss_mib"]))


if __name__ == "__main__":
    from pluralign.training.quiet import quiet_libraries

    quiet_libraries()  # pluralign's own progress only, no library bars
    main()
