"""Training the multi-head classification reward model with summed per-head cross-entropy.

``pluralign train reward-model --type multihead`` dispatches to :func:`run`. Labels come from rating
columns or from scores binned into classes (:func:`bin_scores`); a held-out split reports per-head
accuracy next to the majority-class baseline, and the per-class probability statistics MOSLIM's
reward mapping uses (``stats="head"``) are measured on that split and saved with the model.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import Trainer

from pluralign.errors import DataError
from pluralign.objectives.trained import record_held_out_accuracy
from pluralign.preferences.tags import quantile_edges
from pluralign.reward_models.multihead.config import MultiHeadRewardConfig, default_backbone
from pluralign.reward_models.multihead.model import (
    MultiHeadRewardModel,
    MultiHeadSpec,
    encode,
    load_backbone,
    resolve_pooling,
)
from pluralign.training.manifest import Manifest
from pluralign.training.progress import use_progress_lines
from pluralign.training.state import is_main_process, wait_for_everyone

METRICS_FILE = "head_metrics.json"
PREFERENCE_HEAD = "preference"


def bin_scores(scores: Sequence[float], num_classes: int, binning: str = "quantile") -> tuple[np.ndarray, list[float]]:
    """Classes 0..K-1 for float scores and the K-1 inner edges (class = number of edges <= score).

    ``quantile`` puts about equal counts in each class; ``uniform`` splits [min, max] into equal widths.
    """
    s = np.asarray(scores, dtype=np.float64)
    if binning == "quantile":
        edges = quantile_edges(s, num_classes, "num_classes")
    else:
        edges = np.linspace(s.min(), s.max(), num_classes + 1)[1:-1]
    return np.searchsorted(edges, s, side="right").astype(np.int64), [float(e) for e in edges]


def ratings_to_classes(values: Sequence[Any], num_classes: int, rating_min: int, name: str) -> np.ndarray:
    """Integer ratings (e.g. HelpSteer 0-4) -> classes ``rating - rating_min``; anything else is a DataError."""
    out = []
    for i, v in enumerate(values):
        if v is None or float(v) != int(float(v)):
            raise DataError(
                f"rating column {name!r} row {i} holds {v!r}, not an integer rating; use score_{name} for floats"
            )
        c = int(float(v)) - rating_min
        if not 0 <= c < num_classes:
            raise DataError(
                f"rating column {name!r} row {i} is {v} which is outside {rating_min}..{rating_min + num_classes - 1}; "
                "set --num_classes / --rating_min to cover it"
            )
        out.append(c)
    return np.asarray(out, dtype=np.int64)


@dataclass
class LabelledData:
    prompts: list[str]
    responses: list[str]
    labels: np.ndarray  # (N, H) int classes
    names: list[str]
    num_classes: list[int]
    bin_edges: dict[str, list[float]]
    label_sources: dict[str, str]


def build_labels(
    rows: Sequence[dict[str, Any]], objective_specs: Sequence[str], config: MultiHeadRewardConfig
) -> LabelledData:
    """Turn rows with ``prompt``/``response`` (+ rating or ``score_NAME`` columns) into per-head classes."""
    from pluralign.data.loading import check_prompt, response_text
    from pluralign.objectives.set import ObjectiveSet, parse_objective_spec

    if not objective_specs:
        raise DataError("no objectives given; pass --objective NAME for every head (repeatable)")
    # conversational prompts stay messages: training and scoring render them with the chat template
    prompts = [check_prompt(r["prompt"]) for r in rows]
    responses = [response_text(r["response"]) for r in rows]
    names = [parse_objective_spec(s)["name"] if "=" in s else s for s in objective_specs]
    ks = config.classes_per_objective(names)
    labels, edges, sources = [], {}, {}
    for spec, name, k in zip(objective_specs, names, ks):
        if name in rows[0]:
            labels.append(ratings_to_classes([r[name] for r in rows], k, config.rating_min, name))
            sources[name] = f"rating:{name}"
            continue
        if f"score_{name}" in rows[0]:
            scores = [float(r[f"score_{name}"]) for r in rows]
            sources[name] = f"score_{name}"
        else:
            from pluralign.data.scoring import ScoreCache, score_samples

            objectives = ObjectiveSet.from_specs([spec])  # a built-in name or name=source
            cache = ScoreCache(config.score_cache) if config.score_cache else None
            scores = score_samples(rows, objectives, cache)[name]
            sources[name] = f"scored:{json.dumps(objectives.specs()[0], sort_keys=True)}"
        classes, edges[name] = bin_scores(scores, k, config.binning)
        labels.append(classes)
    return LabelledData(prompts, responses, np.stack(labels, axis=1), names, ks, edges, sources)


class MultiHeadTrainer(Trainer):
    """transformers' Trainer with the multi-head loss: the sum over heads of each head's cross-entropy."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
        labels = inputs.pop("labels")
        logits = model(**inputs)
        loss = sum(nn.functional.cross_entropy(lg, labels[:, i]) for i, lg in enumerate(logits))
        return (loss, tuple(logits)) if return_outputs else loss


class _PairCollator:
    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        labels = torch.tensor([f["labels"] for f in features], dtype=torch.long)
        batch = self.tokenizer.pad(
            [{"input_ids": f["input_ids"], "attention_mask": f["attention_mask"]} for f in features],
            return_tensors="pt",
        )
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": labels}


@torch.no_grad()
def predict_probabilities(
    model: MultiHeadRewardModel, tokenizer: Any, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 64
) -> list[np.ndarray]:
    """Per head, an (N, K_i) array of class probabilities."""
    model.eval()
    device = next(model.parameters()).device
    parts: list[list[np.ndarray]] = [[] for _ in model.heads]
    for start in range(0, len(prompts), batch_size):
        enc = encode(tokenizer, model.spec, prompts[start : start + batch_size], responses[start : start + batch_size])
        logits = model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device))
        for i, lg in enumerate(logits):
            parts[i].append(lg.float().softmax(-1).cpu().numpy())
    return [np.concatenate(p) if p else np.zeros((0, k)) for p, k in zip(parts, model.spec.num_classes)]


def head_metrics(
    probs: Sequence[np.ndarray], labels: np.ndarray, train_labels: np.ndarray, names: Sequence[str]
) -> dict:
    """Per head: held-out accuracy and the accuracy of always predicting the training majority class."""
    out = {}
    for i, name in enumerate(names):
        majority = int(np.bincount(train_labels[:, i]).argmax())
        out[name] = {
            "accuracy": float((probs[i].argmax(1) == labels[:, i]).mean()),
            "majority_baseline": float((labels[:, i] == majority).mean()),
            "n": int(labels.shape[0]),
        }
    return out


def class_statistics(probs: Sequence[np.ndarray], names: Sequence[str]) -> dict[str, list[dict[str, float]]]:
    """Mean and std of p_i[c] for every head i and class c (MOSLIM's "head" normalisation statistics)."""
    out = {}
    for p, name in zip(probs, names):
        out[name] = [{"mean": float(p[:, c].mean()), "std": float(max(p[:, c].std(), 1e-6))} for c in range(p.shape[1])]
    return out


def train_multihead(
    config: MultiHeadRewardConfig,
    rows: Sequence[dict[str, Any]] | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train, evaluate per head on a held-out split, and save the model to ``config.output_dir``.

    ``rows`` (dicts with prompt/response and label columns) may be given directly; otherwise
    ``config.dataset`` is loaded. Returns the metrics that are also written to ``head_metrics.json``.
    """
    start_time = time.time()
    if rows is None:
        rows = _load_rows(config)
    rows = list(rows)
    if config.max_samples:
        rows = rows[: config.max_samples]
    if len(rows) < 10:
        raise DataError(f"the dataset has {len(rows)} samples; a multi-head reward model needs at least 10")
    data = build_labels(rows, config.objective, config)

    train_idx, eval_idx = split_rows(rows, config.eval_fraction, config.seed)
    n_eval = len(eval_idx)

    torch.manual_seed(config.seed)
    backbone, tokenizer = load_backbone(
        config.model_name_or_path or default_backbone(),
        from_scratch=config.from_scratch,
        config_overrides=config.overrides(),
        trust_remote_code=config.trust_remote_code,
    )
    spec = MultiHeadSpec(
        objectives=data.names,
        num_classes=data.num_classes,
        pooling=resolve_pooling(config.pooling, backbone.config),
        input_format=config.input_format,
        max_length=config.max_length,
        bin_edges=data.bin_edges,
        label_sources=data.label_sources,
    )
    model = MultiHeadRewardModel(backbone, spec, dropout=config.head_dropout)

    import datasets

    def features(idx: Sequence[int]) -> datasets.Dataset:
        enc = encode(tokenizer, spec, [data.prompts[i] for i in idx], [data.responses[i] for i in idx], padding=False)
        return datasets.Dataset.from_dict(
            {
                "input_ids": enc["input_ids"],
                "attention_mask": enc["attention_mask"],
                "labels": data.labels[idx].tolist(),
            }
        )

    config.remove_unused_columns = False
    trainer = MultiHeadTrainer(
        model=model, args=config, train_dataset=features(train_idx), data_collator=_PairCollator(tokenizer)
    )
    use_progress_lines(trainer, progress, prefix="multihead: ")
    progress(f"multihead: training {len(spec.objectives)} heads on {len(train_idx)} samples ({n_eval} held out)")
    trainer.train()

    probs = predict_probabilities(
        model, tokenizer, [data.prompts[i] for i in eval_idx], [data.responses[i] for i in eval_idx]
    )
    metrics = head_metrics(probs, data.labels[eval_idx], data.labels[train_idx], spec.objectives)
    spec.class_stats = class_statistics(probs, spec.objectives)
    for name, m in metrics.items():
        progress(f"multihead: head {name}: accuracy {m['accuracy']:.3f} (majority class {m['majority_baseline']:.3f})")

    out = Path(config.output_dir)
    metrics = {"heads": metrics, "train_samples": len(train_idx), "wall_seconds": time.time() - start_time}
    if is_main_process():
        model.save(out, tokenizer)
        (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
        Manifest(
            method="multihead",
            objectives=list(spec.objectives),
            base_model=config.model_name_or_path or "all-MiniLM-L6-v2",
            extra={"num_classes": spec.num_classes, "label_sources": data.label_sources, "head_metrics": metrics["heads"]},
        ).save(out)
        held_pairs = held_out_pairs([rows[i] for i in eval_idx])
        if held_pairs:
            extra = {"train_samples": len(train_idx), "train_seconds": round(metrics["wall_seconds"], 1)}
            metrics["held_out"] = record_held_out_accuracy(out, held_pairs, extra, progress)
    wait_for_everyone()
    return metrics


def split_rows(rows: Sequence[dict[str, Any]], eval_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """``(train, eval)`` row indices; a pair's two responses (rows sharing a ``pair_id``) land on the same
    side, so no held-out pair was seen in training. Rows without a pair are split one by one."""
    from pluralign.data.pairs import split_by_id

    keys = [str(r.get("pair_id") or f"row:{i}") for i, r in enumerate(rows)]
    train, evals = split_by_id(keys, eval_fraction, seed)
    random.Random(seed).shuffle(train)
    return train, evals


def held_out_pairs(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The (prompt, chosen, rejected) pairs among rows that came from a pairs file (``pair_id`` + ``chosen``)."""
    by_id: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.get("pair_id") and "chosen" in r:
            by_id.setdefault(r["pair_id"], {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]})
    return list(by_id.values())


def _load_rows(config: MultiHeadRewardConfig) -> list[dict[str, Any]]:
    """Samples with label columns. A preference-pairs file gives two samples per pair and, without
    ``--objective``, one head ``preference`` with classes rejected (0) / chosen (1)."""
    from pluralign.data.loading import load_any, to_samples
    from pluralign.data.pairs import load_pairs, pair_id

    if not config.dataset:
        raise DataError("--dataset is required: a hub id or a local jsonl/json/parquet/csv file")
    ds = load_any(config.dataset)
    if "chosen" in ds.column_names or "rejected" in ds.column_names:
        pairs = load_pairs(ds, config.prompt_column, skip_invalid=config.skip_invalid_pairs)
        if not config.objective:
            config.objective = [PREFERENCE_HEAD]
            config.num_classes = [2]
        rows = []
        for p in pairs:
            base = {"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"], "pair_id": pair_id(p)}
            rows.append(base | {"response": p["chosen"], PREFERENCE_HEAD: 1})
            rows.append(base | {"response": p["rejected"], PREFERENCE_HEAD: 0})
        return rows
    samples = to_samples(ds, prompt_column=config.prompt_column, response_column=config.response_column)
    label_cols = [c for c in ds.column_names if c != config.prompt_column]
    for sample, row in zip(samples, ds):
        sample.update({c: row[c] for c in label_cols if c not in sample})
    return samples


def run(argv: Sequence[str]) -> int:
    """Entry point of ``pluralign train reward-model --type multihead``."""
    from pluralign.config import parse_config

    config = parse_config(MultiHeadRewardConfig, argv, prog="pluralign train reward-model --type multihead")
    metrics = train_multihead(config)
    print(json.dumps(metrics["heads"], indent=2))
    print(f"saved to {config.output_dir}")
    return 0
