"""The NP-BTL paper's synthetic experiment: BTL vs NP-BTL accuracy by context size k (METHODS.md §5).

Trains both models on the paper's synthetic users (two hidden types, 16k training pairs), then scores the
held-out test pairs that are NOT in the context, for k = 0, 1, 3, 5, 10, averaged over both types and
``--repeats`` random tasks (context + 20 targets) per type. Prints the table next to the paper's figures and writes JSON:

    python benchmarks/npbtl_synthetic.py --out npbtl_synthetic.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pluralign.models.neural_process import NPBTL, NPConfig
from pluralign.objectives.learned.btl import BTL
from pluralign.reward_models.npbtl.synthetic import oracle_accuracy, synthetic_users
from pluralign.training.user_tasks import TaskSampler, accuracy_by_context_size, train_tasks

KS = [0, 1, 3, 5, 10]
PAPER = {"btl": [76.4] * 5, "npbtl": [76.4, 86.6, 94.7, 97.4, 98.9]}


def run(steps: int, btl_steps: int, batch_size: int, lr: float, repeats: int, seed: int, hidden: int) -> dict:
    torch.manual_seed(seed)
    data = synthetic_users(seed=0)
    cfg = NPConfig(input_dim=1, hidden_dim=hidden, latent_dim=hidden)
    start = time.perf_counter()
    npbtl = NPBTL(cfg)
    np_stats = train_tasks(npbtl, TaskSampler(data["train"], seed=seed), steps, batch_size, lr, schedule="cosine")
    btl = BTL(cfg)
    btl_sampler = TaskSampler(data["train"], min_context=0, max_context=0, seed=seed + 1)
    btl_stats = train_tasks(btl, btl_sampler, btl_steps, batch_size, lr, schedule="cosine")
    train_seconds = time.perf_counter() - start
    acc_np = accuracy_by_context_size(npbtl, data["test"], KS, repeats=repeats, seed=seed)
    acc_btl = accuracy_by_context_size(btl, data["test"], KS, repeats=repeats, seed=seed)
    oracle = oracle_accuracy(data["test"], KS, repeats=repeats, seed=seed)
    return {
        "k": KS,
        "btl": [round(acc_btl[k], 2) for k in KS],
        "npbtl": [round(acc_np[k], 2) for k in KS],
        "paper": PAPER,
        "bayes_optimal": [round(oracle[k], 2) for k in KS],
        "train_seconds": round(train_seconds, 1),
        "npbtl_train_seconds": round(np_stats["train_seconds"], 1),
        "btl_train_seconds": round(btl_stats["train_seconds"], 1),
        "train_cpu_seconds": round(np_stats["cpu_seconds"] + btl_stats["cpu_seconds"], 1),
        "settings": {
            "steps": steps,
            "btl_steps": btl_steps,
            "batch_tasks": batch_size,
            "num_targets": 20,
            "context": "k uniform in 0..10",
            "lr": lr,
            "schedule": "cosine",
            "hidden_dim": hidden,
            "eval_repeats_per_type": repeats,
            "threads": torch.get_num_threads(),
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument(
        "--steps", type=int, default=600, help="NP-BTL steps of 64 tasks (the paper ran 750 with a sampled latent)"
    )
    ap.add_argument("--btl_steps", type=int, default=100)
    ap.add_argument("--batch_size", type=int, default=64, help="tasks per batch")
    ap.add_argument("--lr", type=float, default=3e-4, help="peak Adam learning rate (cosine decay to 0)")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=1000, help="tasks (random contexts) per user type and k")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (small MLPs: 1 is fastest on a shared CPU)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = run(args.steps, args.btl_steps, args.batch_size, args.lr, args.repeats, args.seed, args.hidden)
    print(f"{'k':>4} | {'BTL':>6} {'paper':>6} | {'NP-BTL':>6} {'paper':>6} | {'Bayes':>6}")
    for i, k in enumerate(res["k"]):
        print(
            f"{k:>4} | {res['btl'][i]:6.1f} {PAPER['btl'][i]:6.1f} | {res['npbtl'][i]:6.1f} {PAPER['npbtl'][i]:6.1f}"
            f" | {res['bayes_optimal'][i]:6.1f}"
        )
    print(
        f"training: {res['train_seconds']:.1f} s wall, {res['train_cpu_seconds']:.1f} s CPU, "
        f"{res['settings']['threads']} thread(s)"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    from pluralign.training.quiet import quiet_libraries

    quiet_libraries()  # pluralign's own progress only, no library bars
    raise SystemExit(main())
