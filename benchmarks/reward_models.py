"""Reward models on real preference pairs: held-out pairwise accuracy and training wall time per type.

On a pairs file (default: the 1,000 real HH-RLHF harmless-base pairs shipped with pluralign), one
held-out split by pair id (``--eval_fraction``, ``--seed``) shared by every type:

- ``btl``: a linear Bradley-Terry head on frozen all-MiniLM-L6-v2 features (mean-pooled, response kept whole);
- ``npbtl``: NP-BTL (its default MLP sizes) scored with an empty context (k = 0), same features;
- ``classifier``: all-MiniLM-L6-v2 fine-tuned with TRL's RewardTrainer.

Each type is trained through its pluralign trainer (the same code as ``pluralign train reward-model``) and
its accuracy is read back from the ``eval_results.json`` the trainer wrote. Wall time counts everything the
type needs: the frozen features (computed once, shared by btl and npbtl, timed separately) plus training.
Prints a table and writes ``reward_models.json`` to ``--out``.

    python benchmarks/reward_models.py --out runs/bench_rm            # all types, about 25 min on 2 cores
    python benchmarks/reward_models.py --types btl npbtl --out runs/bench_rm
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

TYPES = ("btl", "npbtl", "classifier")


def features_seconds(dataset: str, cache: Path, max_length: int, skip_invalid: bool) -> float:
    """Embed every pair once (timed); btl and npbtl then read the features from the cache."""
    from pluralign.data.pairs import load_pairs
    from pluralign.models.embeddings import Embedder

    pairs = load_pairs(dataset, skip_invalid=skip_invalid, report=None)
    prompts = [p["prompt"] for p in pairs]
    start = time.perf_counter()
    Embedder(None, max_length=max_length, cache_dir=cache).embed(
        prompts + prompts, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    )
    return time.perf_counter() - start


def train_one(kind: str, args: argparse.Namespace, out: Path, cache: Path) -> dict:
    common = dict(
        dataset=args.dataset,
        output_dir=str(out / kind),
        eval_fraction=args.eval_fraction,
        seed=args.seed,
        skip_invalid_pairs=True,
    )
    start = time.perf_counter()
    if kind == "btl":
        from pluralign.reward_models.btl.config import BTLConfig
        from pluralign.reward_models.btl.trainer import train_btl

        cfg = BTLConfig(**common, embedding_cache=str(cache), max_length=args.embedding_max_length,
                        max_steps=args.btl_steps, hidden_dim=args.btl_hidden, batch_tasks=args.btl_batch_tasks,
                        learning_rate=args.btl_learning_rate)  # fmt: skip
        train_btl(cfg, progress=lambda s: None)
    elif kind == "npbtl":
        from pluralign.reward_models.npbtl.config import NPBTLConfig
        from pluralign.reward_models.npbtl.trainer import train_npbtl

        cfg = NPBTLConfig(**common, embedding_cache=str(cache), max_length=args.embedding_max_length,
                          max_steps=args.npbtl_steps, eval_context_sizes=[0])  # fmt: skip
        train_npbtl(cfg, progress=lambda s: None)
    else:
        from pluralign.reward_models.classifier.config import ClassifierRewardConfig
        from pluralign.reward_models.classifier.trainer import train_classifier

        cfg = ClassifierRewardConfig(**common, max_length=args.classifier_max_length,
                                     num_train_epochs=args.classifier_epochs,
                                     learning_rate=args.classifier_learning_rate, use_peft=args.classifier_lora)  # fmt: skip
        train_classifier(cfg, progress=lambda s: None)
    wall = time.perf_counter() - start
    result = json.loads((out / kind / "eval_results.json").read_text())
    return {"type": kind, "accuracy": result["pairwise_accuracy"], "held_out_pairs": result["pairs"],
            "train_pairs": result["train_pairs"], "train_seconds": round(wall, 1)}  # fmt: skip


def main() -> None:
    from pluralign.worlds.chat.assets import hh_harmless_pairs

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=str(hh_harmless_pairs()), help="pairs file (default: shipped HH pairs)")
    p.add_argument("--out", default="runs/bench_reward_models")
    p.add_argument("--types", nargs="+", default=list(TYPES), choices=TYPES)
    p.add_argument("--eval_fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--embedding_max_length", type=int, default=256)
    p.add_argument("--btl_hidden", type=int, default=0, help="0: a linear Bradley-Terry head on the features")
    p.add_argument("--btl_steps", type=int, default=400)
    p.add_argument("--btl_batch_tasks", type=int, default=2, help="tasks of 20 pairs per step")
    p.add_argument("--btl_learning_rate", type=float, default=1e-2)
    p.add_argument("--npbtl_steps", type=int, default=100)
    p.add_argument("--embedding_cache", default=None, help="reuse this feature cache (default: a fresh one)")
    p.add_argument("--classifier_max_length", type=int, default=256)
    p.add_argument("--classifier_epochs", type=float, default=2.0)
    p.add_argument("--classifier_learning_rate", type=float, default=1e-4)
    p.add_argument("--classifier_lora", action="store_true", help="LoRA instead of a full fine-tune")
    args = p.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)  # a benchmark starts from nothing: no cached features or checkpoints
    cache = Path(args.embedding_cache) if args.embedding_cache else out / "embedding_cache"
    rows = []
    feats = None
    for kind in args.types:
        if kind in ("btl", "npbtl") and feats is None:
            feats = features_seconds(args.dataset, cache, args.embedding_max_length, True)
        row = train_one(kind, args, out, cache)
        if kind in ("btl", "npbtl"):
            row["features_seconds"] = round(feats, 1)
            row["wall_seconds"] = round(feats + row["train_seconds"], 1)
        else:
            row["wall_seconds"] = row["train_seconds"]
        rows.append(row)
        print(f"{kind}: accuracy {row['accuracy']:.3f}, wall {row['wall_seconds']:.0f}s", flush=True)

    print(f"\nheld-out pairwise accuracy ({rows[0]['held_out_pairs']} pairs, split by pair, seed {args.seed})")
    print(f"{'type':<12}{'accuracy':>10}{'wall s':>10}")
    for r in rows:
        print(f"{r['type']:<12}{r['accuracy']:>10.3f}{r['wall_seconds']:>10.0f}")
    report = {
        "dataset": args.dataset,
        "eval_fraction": args.eval_fraction,
        "seed": args.seed,
        "settings": {k: v for k, v in vars(args).items() if k not in ("dataset", "out", "types")},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "results": rows,
    }
    (out / "reward_models.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {out / 'reward_models.json'}")


if __name__ == "__main__":
    main()
