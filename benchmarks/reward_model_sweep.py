"""Cheap sweeps that chose the reward-model defaults: held-out accuracy per setting, on splits by pair.

Every setting is scored on the same held-out splits (``--eval_fraction`` of the pairs by pair id, one split
per seed), and only the parts that are cheap once features are cached are swept:

- ``features``: btl and npbtl (head size, learning rate, weight decay, steps, early stopping on a
  validation split by pair, the encoder layer pooled), trained through their pluralign trainers on frozen
  all-MiniLM-L6-v2 features cached once in ``OUT/caches/embeddings``;
- ``head``: the classifier's head-only mode (``--trainable_layers 0``) per backbone, ``max_length``, pooling
  and pooled block (``--poolings``, ``--pooling_layers``: what the head reads): the pooled features are
  computed once by the classifier's own code (tokenisation, chat template, ``apply_pooling``,
  :func:`pluralign.models.frozen_layers.extract`) into ``OUT/caches/<backbone>``, then the head is fitted
  per L2 penalty (:func:`pluralign.training.bradley_terry.fit_linear_head`) and scored on the held-out pairs'
  cached features (what the saved model computes);
- ``top``: the classifier's top-blocks mode (``--trainable_layers N``), trained by ``train_classifier`` on
  hidden states cached once per backbone (the costliest part: a few settings), and the whole model;
- ``ensemble``: btl (its defaults) and the SmolLM2 head, and the mean of their z-scores (statistics on the
  training pairs), from the features cached by ``features`` and ``head``.

Results are appended to ``OUT/sweep.jsonl`` as they come (a rerun skips settings already done, so a sweep can
be run in short slices); ``--report`` prints the table of mean held-out accuracy per setting.

    python benchmarks/reward_model_sweep.py --part features --out runs/sweep
    python benchmarks/reward_model_sweep.py --part head --backbones minilm smollm2 --out runs/sweep
    python benchmarks/reward_model_sweep.py --part head --backbones minilm --poolings mean model \
        --pooling_layers 1 2 3 4 5 6 --seeds 0 1 2 3 4 --out runs/sweep     # what MiniLM's head reads
    python benchmarks/reward_model_sweep.py --part top --out runs/sweep
    python benchmarks/reward_model_sweep.py --report --out runs/sweep
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

BACKBONES = {"minilm": "builtin:all-minilm-l6-v2", "smollm2": "builtin:smollm2-135m-instruct"}
FEATURE_GRID = {
    "btl": [
        {"hidden_dim": h, "embedding_layer": layer, "learning_rate": lr, "max_steps": steps, "weight_decay": wd,
         "batch_tasks": 16}
        for layer, h, (lr, steps), wd in itertools.product([-1, 4], [0, 256], [(1e-2, 300), (1e-3, 1000)], [0.0, 0.1])
        if not (wd and lr < 1e-2)
    ] + [
        {"hidden_dim": h, "embedding_layer": layer, "learning_rate": 1e-3, "max_steps": 3000, "batch_tasks": 16,
         "validation_fraction": 0.15}
        for layer, h in itertools.product([-1, 4], [0, 256])
    ],
    "npbtl": [
        {"embedding_layer": layer, "learning_rate": lr, "max_steps": steps}
        for layer, (lr, steps) in itertools.product([-1, 4], [(1e-4, 1000), (1e-3, 300)])
    ] + [
        {"embedding_layer": layer, "learning_rate": 1e-3, "max_steps": 3000, "validation_fraction": 0.15}
        for layer in (-1, 4)
    ] + [
        {"embedding_layer": 4, "learning_rate": 1e-3, "max_steps": 300, "hidden_dim": h, "weight_decay": wd}
        for h, wd in itertools.product([32, 64], [0.0, 0.1])
    ] + [
        {"embedding_layer": 4, "learning_rate": 1e-3, "max_steps": 3000, "validation_fraction": 0.15, "hidden_dim": 64,
         "weight_decay": wd}
        for wd in (0.0, 0.1)
    ] + [
        {"embedding_layer": 4, "learning_rate": 1e-3, "max_steps": 3000, "validation_fraction": 0.15,
         "_note": "validated at k=0 and k=10"}
    ] + [  # rows above: the paper's MLP decoder (decoder mlp); these: r = w.x + (V x).z
        {"embedding_layer": 4, "learning_rate": lr, "max_steps": steps, "validation_fraction": 0.15,
         "hidden_dim": h, "decoder": "bilinear"}
        for h, lr, steps in [(256, 1e-3, 3000), (64, 1e-3, 3000), (64, 1e-2, 1000)]
    ],
}  # fmt: skip
HEAD_L2 = [0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0]
TOP_GRID = [
    {"trainable_layers": n, "learning_rate": lr, "num_train_epochs": ep, "max_length": ml}
    for n, lr, ep, ml in [(1, 1e-4, 2, 256), (1, 5e-4, 2, 256), (2, 5e-4, 2, 256), (3, 5e-4, 2, 256),
                          (2, 1e-3, 2, 256)]
] + [  # the whole model, as before issue 22 (2 epochs, lr 1e-4), for comparison; checkpoints often: runs resume
    {"trainable_layers": None, "learning_rate": 1e-4, "num_train_epochs": 2, "max_length": 256, "save_steps": 10}
]


def load_split_pairs(dataset: str) -> list[dict[str, Any]]:
    from pluralign.data.pairs import load_pairs

    return load_pairs(dataset, skip_invalid=True, report=None)


def done_keys(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    return {json.loads(line)["key"] for line in path.read_text().splitlines() if line.strip()}


def record(path: Path, row: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"{row['part']} {row['setting']} seed {row['seed']}: {row['accuracy']:.3f} ({row['seconds']:.0f}s)", flush=True)


def over_budget(start: float, budget: float) -> bool:
    return budget > 0 and time.perf_counter() - start > budget


def sweep_features(args: argparse.Namespace, out: Path, start: float) -> None:
    from pluralign.reward_models.btl.config import BTLConfig
    from pluralign.reward_models.btl.trainer import train_btl
    from pluralign.reward_models.npbtl.config import NPBTLConfig
    from pluralign.reward_models.npbtl.trainer import train_npbtl

    done = done_keys(out / "sweep.jsonl")
    for kind, grid in FEATURE_GRID.items():
        config, train = (BTLConfig, train_btl) if kind == "btl" else (NPBTLConfig, train_npbtl)
        for setting, seed in itertools.product(grid, args.seeds):
            key = json.dumps({"part": "features", "type": kind, "setting": setting, "seed": seed}, sort_keys=True)
            if key in done:
                continue
            if over_budget(start, args.budget):
                return
            run_dir = out / "runs" / "features"
            extra = {"eval_context_sizes": [0]} if kind == "npbtl" else {}
            options = {k: v for k, v in setting.items() if not k.startswith("_")}  # "_note": a label only
            cfg = config(dataset=args.dataset, output_dir=str(run_dir), eval_fraction=args.eval_fraction, seed=seed,
                         skip_invalid_pairs=True, embedding_cache=str(out / "caches" / "embeddings"), **options,
                         **extra)  # fmt: skip
            t = time.perf_counter()
            train(cfg, progress=lambda s: None)
            result = json.loads((run_dir / "eval_results.json").read_text())
            shutil.rmtree(run_dir, ignore_errors=True)
            record(out / "sweep.jsonl", {"key": key, "part": "features", "type": kind, "setting": setting,
                                          "seed": seed, "accuracy": result["pairwise_accuracy"],
                                          "seconds": time.perf_counter() - t,
                                          "best_step": result.get("best_step")})  # fmt: skip


def sweep_head(args: argparse.Namespace, out: Path, start: float) -> None:
    import torch

    from pluralign.data.pairs import split_pairs
    from pluralign.models.feature_cache import ids_key
    from pluralign.models.frozen_layers import extract
    from pluralign.reward_models.classifier.trainer import (
        apply_pooling,
        feature_cache_for,
        load_backbone,
        resolve_backbone,
        tokenize_pairs,
        uses_chat_template,
    )
    from pluralign.training.bradley_terry import choose_l2, fit_linear_head, margins

    pairs = load_split_pairs(args.dataset)
    done = done_keys(out / "sweep.jsonl")
    for name, pooling, layer, max_length in itertools.product(args.backbones, args.poolings, args.pooling_layers,
                                                              args.max_lengths):  # fmt: skip
        backbone = resolve_backbone(BACKBONES.get(name, name))
        model, tok = load_backbone(backbone)
        chat = uses_chat_template(tok, None)
        reads = apply_pooling(model, pooling, layer, BACKBONES.get(name, name))
        cache = feature_cache_for(out / "caches" / name, backbone, 0, model, reads)
        # rows measured before the pooling was an option (the model's own pooling, every block) keep their key
        plain = reads["pooling"] == "model" and not reads["blocks_dropped"]
        what = {} if plain else {"pooling": reads["pooling"], "pooling_layer": reads["pooling_layer"]}
        t = time.perf_counter()
        cols = tokenize_pairs(tok, pairs, max_length, chat)
        t_tok = time.perf_counter() - t
        t = time.perf_counter()
        extract(model, cols["chosen_ids"] + cols["rejected_ids"], cache, 0, tok.pad_token_id, progress=print)
        t_feat = time.perf_counter() - t
        if cache.missing(ids_key(x) for x in cols["chosen_ids"] + cols["rejected_ids"]):
            return
        chosen = torch.stack(cache.get([ids_key(x) for x in cols["chosen_ids"]]))
        rejected = torch.stack(cache.get([ids_key(x) for x in cols["rejected_ids"]]))
        index = {id(p): i for i, p in enumerate(pairs)}
        for l2, seed in itertools.product([*HEAD_L2, "cv"], args.seeds):
            setting = {"backbone": name, "max_length": max_length, "head_l2": l2, **what}
            key = json.dumps({"part": "head", "setting": setting, "seed": seed}, sort_keys=True)
            if key in done:
                continue
            train, held = split_pairs(pairs, args.eval_fraction, seed)
            tr = torch.tensor([index[id(p)] for p in train])
            he = torch.tensor([index[id(p)] for p in held])
            t = time.perf_counter()
            penalty = choose_l2(chosen[tr], rejected[tr], seed=seed) if l2 == "cv" else l2
            w = fit_linear_head(chosen[tr], rejected[tr], penalty)
            acc = float((margins(chosen[he], rejected[he], w) > 0).float().mean())
            record(out / "sweep.jsonl", {"key": key, "part": "head", "setting": setting, "seed": seed,
                                          "accuracy": round(acc, 4), "seconds": time.perf_counter() - t,
                                          "tokenize_seconds": t_tok, "feature_seconds": t_feat,
                                          "head_l2": penalty})  # fmt: skip


def sweep_top(args: argparse.Namespace, out: Path, start: float) -> None:
    from pluralign.reward_models.classifier.config import ClassifierRewardConfig
    from pluralign.reward_models.classifier.trainer import train_classifier

    done = done_keys(out / "sweep.jsonl")
    for name, setting, seed in itertools.product(args.backbones, TOP_GRID, args.seeds):
        key = json.dumps({"part": "top", "backbone": name, "setting": setting, "seed": seed}, sort_keys=True)
        if key in done:
            continue
        if over_budget(start, args.budget):
            return
        run_dir = out / "runs" / ("top-" + hashlib.sha1(key.encode()).hexdigest()[:10])  # a stopped run resumes
        cfg = ClassifierRewardConfig(dataset=args.dataset, output_dir=str(run_dir), eval_fraction=args.eval_fraction,
                                     seed=seed, skip_invalid_pairs=True, model_name_or_path=BACKBONES.get(name, name),
                                     feature_cache=str(out / "caches" / f"{name}-top{setting['trainable_layers']}"),
                                     save_total_limit=1,
                                     report_to="none", **setting)  # fmt: skip
        t = time.perf_counter()
        train_classifier(cfg, progress=print)
        result = json.loads((run_dir / "eval_results.json").read_text())
        shutil.rmtree(run_dir, ignore_errors=True)
        record(out / "sweep.jsonl", {"key": key, "part": "top", "setting": {"backbone": name, **setting}, "seed": seed,
                                      "accuracy": result["pairwise_accuracy"], "seconds": time.perf_counter() - t,
                                      "stage_seconds": result.get("stage_seconds")})  # fmt: skip


def sweep_ensemble(args: argparse.Namespace, out: Path, start: float) -> None:
    """btl (its defaults) + the SmolLM2 head (cross-validated penalty) and their z-score mean, per seed: the
    members' scores come from the cached features, which is exactly what the saved models compute."""
    import numpy as np
    import torch

    from pluralign.data.pairs import split_pairs
    from pluralign.models.feature_cache import ids_key
    from pluralign.objectives.set import ObjectiveStats
    from pluralign.objectives.trained import accuracy_of_margins, agreement, load_reward_model
    from pluralign.reward_models.btl.config import BTLConfig
    from pluralign.reward_models.btl.trainer import train_btl
    from pluralign.reward_models.classifier.trainer import (
        feature_cache_for,
        load_backbone,
        resolve_backbone,
        tokenize_pairs,
    )
    from pluralign.training.bradley_terry import choose_l2, fit_linear_head

    pairs = load_split_pairs(args.dataset)
    done = done_keys(out / "sweep.jsonl")
    backbone = resolve_backbone(BACKBONES["smollm2"])
    model, tok = load_backbone(backbone)
    cache = feature_cache_for(out / "caches" / "smollm2", backbone, 0, model)
    cols = tokenize_pairs(tok, pairs, 256, chat=True)
    feats = {id(p): (c, r) for p, c, r in zip(pairs, cache.get([ids_key(x) for x in cols["chosen_ids"]]),
                                              cache.get([ids_key(x) for x in cols["rejected_ids"]]))}  # fmt: skip
    for seed in args.seeds:
        key = json.dumps({"part": "ensemble", "setting": {"members": ["btl", "smollm2-head"]}, "seed": seed})
        if key in done:
            continue
        t = time.perf_counter()
        train, held = split_pairs(pairs, args.eval_fraction, seed)
        run_dir = out / "runs" / "ensemble-btl"
        train_btl(BTLConfig(dataset=args.dataset, output_dir=str(run_dir), eval_fraction=args.eval_fraction, seed=seed,
                            skip_invalid_pairs=True, embedding_cache=str(out / "caches" / "embeddings")),
                  progress=lambda s: None)  # fmt: skip
        btl = load_reward_model(run_dir, embedding_cache=str(out / "caches" / "embeddings"))

        def btl_scores(ps: list, rm: Any = btl) -> np.ndarray:
            prompts = [p["prompt"] for p in ps]
            return np.asarray(rm.score(prompts * 2, [p["chosen"] for p in ps] + [p["rejected"] for p in ps]))

        def smol(ps: list) -> torch.Tensor:
            return torch.stack([feats[id(p)][0] for p in ps] + [feats[id(p)][1] for p in ps]).float()

        n_train, n_held = len(train), len(held)
        tr = smol(train)
        l2 = choose_l2(tr[:n_train], tr[n_train:], seed=seed)
        w = fit_linear_head(tr[:n_train], tr[n_train:], l2)
        members = {"btl": (btl_scores(train), btl_scores(held)),
                   "smollm2-head": ((tr @ w).numpy(), (smol(held) @ w).numpy())}  # fmt: skip
        z_held = []
        row: dict[str, Any] = {}
        for name, (on_train, on_held) in members.items():
            stats = ObjectiveStats.fit(on_train, name)
            z_held.append(stats.z(on_held))
            row[name] = accuracy_of_margins(on_held[:n_held] - on_held[n_held:])["pairwise_accuracy"]
        mean = np.mean(z_held, axis=0)
        acc = accuracy_of_margins(mean[:n_held] - mean[n_held:])
        margins = [z[:n_held] - z[n_held:] for z in z_held]
        shutil.rmtree(run_dir, ignore_errors=True)
        record(out / "sweep.jsonl", {"key": key, "part": "ensemble", "setting": {"members": list(members)},
                                      "seed": seed, "accuracy": acc["pairwise_accuracy"], "members": row,
                                      "agreement": agreement(*margins), "seconds": time.perf_counter() - t})  # fmt: skip


def report(out: Path) -> None:
    rows = [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines() if line.strip()]
    groups: dict[str, list[dict]] = {}
    for r in rows:
        label = f"{r['part']}:{r.get('type', '')}:{json.dumps(r['setting'], sort_keys=True)}"
        groups.setdefault(label, []).append(r)
    print(f"{'setting':<110}{'seeds':>6}{'mean':>8}{'min':>7}{'max':>7}{'s/run':>7}")
    for label, rs in sorted(groups.items(), key=lambda kv: -statistics.fmean(r["accuracy"] for r in kv[1])):
        acc = [r["accuracy"] for r in rs]
        print(f"{label:<110}{len(rs):>6}{statistics.fmean(acc):>8.3f}{min(acc):>7.3f}{max(acc):>7.3f}"
              f"{statistics.fmean(r['seconds'] for r in rs):>7.0f}")  # fmt: skip


def main() -> None:
    from pluralign.worlds.chat.assets import hh_harmless_pairs

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=str(hh_harmless_pairs()))
    p.add_argument("--out", default="runs/reward_model_sweep")
    p.add_argument("--part", choices=["features", "head", "top", "ensemble"], default=None)
    p.add_argument("--report", action="store_true", help="print the table of what is in OUT/sweep.jsonl")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--eval_fraction", type=float, default=0.2)
    p.add_argument("--backbones", nargs="+", default=["minilm"], help="minilm, smollm2 or a model folder / hub id")
    p.add_argument("--max_lengths", nargs="+", type=int, default=[256])
    p.add_argument("--poolings", nargs="+", default=["auto"], help="--part head: auto, mean and/or model")
    p.add_argument("--pooling_layers", nargs="+", type=int, default=[None],
                   help="--part head: the blocks read (default: the classifier's default)")  # fmt: skip
    p.add_argument("--budget", type=float, default=0, help="stop starting new runs after this many seconds")
    p.add_argument("--threads", type=int, default=0, help="torch threads (small heads on a busy CPU: 1)")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from pluralign.training.quiet import quiet_libraries

    quiet_libraries()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.part:
        parts = {"features": sweep_features, "head": sweep_head, "top": sweep_top, "ensemble": sweep_ensemble}
        parts[args.part](args, out, start)
    if args.report or not args.part:
        report(out)


if __name__ == "__main__":
    main()
