"""Reward models on real preference pairs: held-out pairwise accuracy and wall time per type and backbone,
over several held-out splits.

On a pairs file (default: the 1,000 real HH-RLHF harmless-base pairs shipped with pluralign), every row is
trained once per seed on its own 80/20 split by pair id (``--eval_fraction``, ``--seeds``), through its
pluralign trainer (the same code as ``pluralign train reward-model``) with the DEFAULTS a user gets, and its
accuracy is read back from the ``eval_results.json`` the trainer wrote. Rows:

- ``btl``: the Bradley-Terry head on frozen all-MiniLM-L6-v2 features;
- ``btl-response`` (not in the default rows): the same, its features the mean over the response's tokens only;
- ``npbtl``: NP-BTL on the same features, scored with an empty context (k = 0);
- ``npbtl-response`` (not in the default rows): the same on the response-pooled features;
- ``multihead``: one two-class head (chosen / rejected: MOSLIM's classification reward model) fitted on the
  frozen all-MiniLM-L6-v2's pooled features (the masked mean of block 4);
- ``classifier-minilm``: all-MiniLM-L6-v2 as a sequence classifier, its head fitted on the masked mean of block 4;
- ``classifier-smollm2``: ``builtin:smollm2-135m-instruct`` as a sequence classifier, the dialogue rendered
  with its chat template, in the mode that fits a CPU (:data:`SMOLLM2`);
- ``classifier-smollm2-lora`` (not in the default rows: for a GPU): the same with LoRA.

Wall time counts everything a run needs: features, training and the held-out evaluation. A row's frozen
features are cached in ``OUT/caches`` and shared by its seeds (a feature depends on the text, not on the
split), so the first seed pays for them: its wall time is reported as ``cold_seconds`` beside the mean
over seeds. ``--feature_cache DIR`` keeps them in DIR instead, across benchmark runs (one folder serves
every row: each model, block and pooling has its own subfolder), so a rerun, or a run of other seeds,
computes none of them again; its cold times then exclude them. Prints a table and writes
``reward_models.json`` to ``--out``.

    python benchmarks/reward_models.py --out runs/bench_rm                  # every row, 5 seeds
    python benchmarks/reward_models.py --quick --out runs/bench_rm_quick    # a smoke run of the pipeline
    python benchmarks/reward_models.py --rows btl classifier-smollm2 --seeds 0 1 --out runs/bench_rm
    python benchmarks/reward_models.py --rows classifier-smollm2 --feature_cache runs/rm_features --out runs/bench_smol
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SMOLLM2 = "builtin:smollm2-135m-instruct"
# row -> (reward-model type, settings beyond the type's defaults); every row also gets the dataset, the
# output folder, the split (eval_fraction, seed), skip_invalid_pairs and a feature cache shared by its seeds
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "btl": ("btl", {}),
    "btl-response": ("btl", {"embedding_pooling": "response"}),
    "npbtl": ("npbtl", {"eval_context_sizes": [0]}),
    "npbtl-response": ("npbtl", {"eval_context_sizes": [0], "embedding_pooling": "response"}),
    "multihead": ("multihead", {"report_to": "none"}),
    "classifier-minilm": ("classifier", {"report_to": "none"}),
    "classifier-smollm2": ("classifier", {"report_to": "none", "model_name_or_path": SMOLLM2, "trainable_layers": 0}),
    "classifier-smollm2-lora": ("classifier", {"report_to": "none", "model_name_or_path": SMOLLM2, "use_peft": True}),
}
DEFAULT_ROWS = ["btl", "npbtl", "multihead", "classifier-minilm", "classifier-smollm2"]
# --quick: a few minutes on a CPU; checks the pipeline end to end, its accuracies mean nothing
QUICK = {
    "btl": {"max_steps": 50},
    "npbtl": {"max_steps": 30},
    "multihead": {"max_steps": 3, "max_length": 64},
    "classifier-minilm": {"max_steps": 3, "max_length": 64},
    "classifier-smollm2": {"max_length": 64},
    "classifier-smollm2-lora": {"max_steps": 2, "max_length": 64},
}


def train_row(row: str, seed: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Train one row on one split; returns its held-out accuracy and wall seconds."""
    kind, settings = ROWS[row]
    run_dir = out / "runs" / f"{row}-seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cache = Path(args.feature_cache) if args.feature_cache else out / "caches" / row
    common: dict[str, Any] = dict(dataset=args.dataset, output_dir=str(run_dir), eval_fraction=args.eval_fraction,
                                  seed=seed, skip_invalid_pairs=True)  # fmt: skip
    settings = {**settings, **(QUICK.get(row, {}) if args.quick else {})}
    if args.max_pairs:
        settings["max_samples" if kind == "multihead" else "max_pairs"] = args.max_pairs * (2 if kind == "multihead" else 1)
    start = time.perf_counter()
    if kind in ("btl", "npbtl"):
        if kind == "btl":
            from pluralign.reward_models.btl.config import BTLConfig as Config
            from pluralign.reward_models.btl.trainer import train_btl as train
        else:
            from pluralign.reward_models.npbtl.config import NPBTLConfig as Config
            from pluralign.reward_models.npbtl.trainer import train_npbtl as train
        settings.pop("max_pairs", None)  # the pairwise types read the whole file
        train(Config(**common, embedding_cache=str(out / "caches" / "embeddings"), **settings), progress=lambda s: None)
    elif kind == "multihead":
        from pluralign.reward_models.multihead.config import MultiHeadRewardConfig
        from pluralign.reward_models.multihead.trainer import train_multihead

        train_multihead(MultiHeadRewardConfig(**common, feature_cache=str(cache), **settings), progress=lambda s: None)
    else:
        from pluralign.reward_models.classifier.config import ClassifierRewardConfig
        from pluralign.reward_models.classifier.trainer import train_classifier

        cfg = ClassifierRewardConfig(**common, feature_cache=str(cache), **settings)
        train_classifier(cfg, progress=lambda s: None)
    wall = time.perf_counter() - start
    result = json.loads((run_dir / "eval_results.json").read_text())
    if not args.keep_models:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"row": row, "type": kind, "seed": seed, "accuracy": result["pairwise_accuracy"],
            "ci95": result.get("ci95"), "held_out_pairs": result["pairs"], "train_pairs": result["train_pairs"],
            "wall_seconds": round(wall, 1), "stage_seconds": result.get("stage_seconds")}  # fmt: skip


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per row: mean, min and max held-out accuracy and wall time over the seeds (first seed: cold)."""
    out = []
    for row in dict.fromkeys(r["row"] for r in runs):
        rs = [r for r in runs if r["row"] == row]
        acc = [r["accuracy"] for r in rs]
        wall = [r["wall_seconds"] for r in rs]
        out.append({"row": row, "seeds": len(rs), "accuracy_mean": round(statistics.fmean(acc), 4),
                    "accuracy_min": min(acc), "accuracy_max": max(acc), "wall_mean": round(statistics.fmean(wall), 1),
                    "wall_min": min(wall), "wall_max": max(wall), "cold_seconds": wall[0],
                    "held_out_pairs": rs[0]["held_out_pairs"], "train_pairs": rs[0]["train_pairs"]})  # fmt: skip
    return out


def table(summary: list[dict[str, Any]]) -> str:
    lines = [f"{'row':<26}{'acc mean':>9}{'min':>7}{'max':>7}{'wall mean s':>13}{'min':>7}{'max':>7}{'cold s':>8}"]
    for s in summary:
        lines.append(f"{s['row']:<26}{s['accuracy_mean']:>9.3f}{s['accuracy_min']:>7.3f}{s['accuracy_max']:>7.3f}"
                     f"{s['wall_mean']:>13.0f}{s['wall_min']:>7.0f}{s['wall_max']:>7.0f}{s['cold_seconds']:>8.0f}")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    from pluralign.worlds.chat.assets import hh_harmless_pairs

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=str(hh_harmless_pairs()), help="pairs file (default: shipped HH pairs)")
    p.add_argument("--out", default="runs/bench_reward_models")
    p.add_argument("--rows", nargs="+", default=None, choices=list(ROWS), help=f"default: {' '.join(DEFAULT_ROWS)}")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="split seeds (default: 0 1 2 3 4)")
    p.add_argument("--eval_fraction", type=float, default=0.2)
    p.add_argument("--max_pairs", type=int, default=None, help="use the first N pairs (multihead, classifier)")
    p.add_argument("--quick", action="store_true", help="2 seeds, 200 pairs, short training: checks the pipeline")
    p.add_argument("--keep_models", action="store_true", help="keep every trained model under OUT/runs")
    p.add_argument("--feature_cache", default=None,
                   help="keep the frozen features of the classifier and multihead rows in this folder, across runs "
                        "(default: OUT/caches, emptied when the benchmark starts)")  # fmt: skip
    args = p.parse_args()
    rows = args.rows or DEFAULT_ROWS
    seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2, 3, 4])
    if args.quick and not args.max_pairs:
        args.max_pairs = 200

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from pluralign.training.quiet import quiet_libraries

    quiet_libraries()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)  # a benchmark starts from nothing: no cached features or checkpoints
    runs = []
    for row in rows:
        for seed in seeds:
            run = train_row(row, seed, args, out)
            runs.append(run)
            print(f"{row} seed {seed}: accuracy {run['accuracy']:.3f} on {run['held_out_pairs']} pairs, "
                  f"wall {run['wall_seconds']:.0f}s {run['stage_seconds'] or ''}", flush=True)  # fmt: skip
    summary = summarise(runs)
    print(f"\nheld-out pairwise accuracy over {len(seeds)} splits by pair ({args.eval_fraction:.0%} held out, "
          f"seeds {' '.join(map(str, seeds))}); wall seconds per run (cold: the first seed, features included)")  # fmt: skip
    print(table(summary))
    report = {
        "dataset": args.dataset,
        "eval_fraction": args.eval_fraction,
        "seeds": seeds,
        "quick": args.quick,
        "max_pairs": args.max_pairs,
        "feature_cache": args.feature_cache,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "processor": platform.processor()},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": {row: {"type": ROWS[row][0], "settings": ROWS[row][1]} for row in rows},
        "summary": summary,
        "runs": runs,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "reward_models.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {out / 'reward_models.json'}")


if __name__ == "__main__":
    main()
