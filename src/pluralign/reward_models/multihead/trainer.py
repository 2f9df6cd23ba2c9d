"""Training the multi-head classification reward model with summed per-head cross-entropy.

``pluralign train reward-model --type multihead`` dispatches to :func:`run`. Labels come from rating
columns or from scores binned into classes (:func:`bin_scores`); a held-out split reports per-head
accuracy next to the majority-class baseline, and the per-class probability statistics MOSLIM's
reward mapping uses (``stats="head"``) are measured on that split and saved with the model.

Two ways to minimise the loss (``--trainable_layers``): with the backbone frozen (``0``, the default for a
pretrained backbone of more than 2 blocks) the sum splits into one convex softmax regression per head,
fitted to convergence (:mod:`pluralign.training.softmax_head`) on the pooled features, which the backbone
computes once per text and :class:`~pluralign.models.feature_cache.FeatureCache` keeps (a rerun, or
another split, computes only what is new); ``-1`` trains the backbone and the heads together with
transformers' Trainer. From a pairs file each response is one sample of the head ``preference``:
class 1 chosen, 0 rejected; the pairwise accuracy on the held-out pairs scores each response by the
saved model (the probability of class 1) and counts the pairs whose chosen response scores higher.
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
from pluralign.models.manifest import Manifest
from pluralign.models.state import is_main_process, wait_for_everyone
from pluralign.objectives.learned.multihead import (
    MultiHeadRewardModel,
    MultiHeadSpec,
    encode,
    load_backbone,
    predict_probabilities,
    resolve_pooling,
)
from pluralign.objectives.trained import record_held_out_accuracy, update_held_out
from pluralign.preferences.tags import quantile_edges
from pluralign.reward_models.multihead.config import HEADS_ONLY_ABOVE_BLOCKS, MultiHeadRewardConfig, default_backbone
from pluralign.training.progress import StageTimer, use_progress_lines

METRICS_FILE = "head_metrics.json"
PREFERENCE_HEAD = "preference"
FEATURE_CACHE = "feature_cache"


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
            from pluralign.objectives.scoring import ScoreCache, score_samples

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
    timer = StageTimer()
    with timer("load"):
        if rows is None:
            rows = _load_rows(config, progress)
        rows = list(rows)
        if config.max_samples:
            rows = rows[: config.max_samples]
        if len(rows) < 10:
            raise DataError(f"the dataset has {len(rows)} samples; a multi-head reward model needs at least 10")
        data = build_labels(rows, config.objective, config)
        train_idx, eval_idx = split_rows(rows, config.eval_fraction, config.seed)
        n_eval = len(eval_idx)

        torch.manual_seed(config.seed)
        source = config.model_name_or_path or default_backbone()
        backbone, tokenizer = load_backbone(
            source,
            from_scratch=config.from_scratch,
            config_overrides=config.overrides(),
            trust_remote_code=config.trust_remote_code,
        )
        heads_only = resolve_trainable_layers(config, backbone) == 0  # by the depth of the backbone as loaded
        layer = pooled_block(backbone, config)
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

    out = Path(config.output_dir)
    what = "the heads on cached features" if heads_only else "the backbone and the heads"
    progress(f"multihead: training {what} ({len(spec.objectives)} heads, {spec.pooling} pooling"
             f"{f' of block {layer}' if layer else ''}) on {len(train_idx)} samples ({n_eval} held out)")  # fmt: skip
    if heads_only:
        probs = _fit_heads(config, model, tokenizer, data, rows, train_idx, eval_idx, source, layer, timer, progress)
    else:
        with timer("train"):
            _train_whole(config, model, tokenizer, data, train_idx, progress)
        with timer("held-out heads"):
            probs = predict_probabilities(
                model, tokenizer, [data.prompts[i] for i in eval_idx], [data.responses[i] for i in eval_idx]
            )
    metrics = head_metrics(probs, data.labels[eval_idx], data.labels[train_idx], spec.objectives)
    spec.class_stats = class_statistics(probs, spec.objectives)
    for name, m in metrics.items():
        progress(f"multihead: head {name}: accuracy {m['accuracy']:.3f} (majority class {m['majority_baseline']:.3f})")

    metrics = {"heads": metrics, "train_samples": len(train_idx), "wall_seconds": time.time() - start_time}
    if is_main_process():
        with timer("save"):
            model.save(out, tokenizer)
            (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
            Manifest(
                method="multihead",
                objectives=list(spec.objectives),
                base_model=config.model_name_or_path or "all-MiniLM-L6-v2",
                extra={"num_classes": spec.num_classes, "label_sources": data.label_sources,
                       "head_metrics": metrics["heads"], "pooling": spec.pooling, "pooling_layer": layer,
                       "trainable_layers": 0 if heads_only else -1},
            ).save(out)  # fmt: skip
        held_pairs = held_out_pairs([rows[i] for i in eval_idx])
        if held_pairs:
            train_pairs = len({rows[i]["pair_id"] for i in train_idx if rows[i].get("pair_id")})
            extra = {"train_samples": len(train_idx), "train_pairs": train_pairs,
                     "train_seconds": round(time.time() - start_time, 1)}  # fmt: skip
            with timer("evaluate"):
                metrics["held_out"] = record_held_out_accuracy(out, held_pairs, extra, progress)
            update_held_out(out, {"stage_seconds": timer.seconds})
        if heads_only and not config.feature_cache:
            import shutil

            shutil.rmtree(out / FEATURE_CACHE, ignore_errors=True)
    wait_for_everyone()
    progress(f"multihead: time per stage: {timer.line()}")
    return metrics


def pooled_block(backbone: nn.Module, config: MultiHeadRewardConfig) -> int | None:
    """``--pooling_layer`` applied: the backbone keeps its blocks up to the pooled one (by default block 4 of
    the bundled, pretrained MiniLM; the last of any other); returns that block, or None for the last."""
    from pluralign.models.embeddings import default_layer
    from pluralign.models.encoder_pooling import keep_blocks, resolve_pooled_layer
    from pluralign.models.frozen_layers import transformer_blocks

    default = -1 if config.from_scratch else default_layer(config.model_name_or_path)
    if config.pooling_layer is None and default == -1:
        return None
    blocks = len(transformer_blocks(backbone))
    layer = resolve_pooled_layer(config.pooling_layer, config.model_name_or_path, blocks, not config.from_scratch)
    keep_blocks(backbone, layer)
    return layer


def resolve_trainable_layers(config: MultiHeadRewardConfig, backbone: nn.Module) -> int:
    """``--trainable_layers`` as the run uses it: 0 (the heads on cached features) or -1 (everything).
    Unset: 0 for a pretrained backbone of more than ``HEADS_ONLY_ABOVE_BLOCKS`` blocks, else -1."""
    if config.trainable_layers is not None:
        return config.trainable_layers
    if config.from_scratch:
        return -1
    text = backbone.config.get_text_config() if hasattr(backbone.config, "get_text_config") else backbone.config
    return 0 if int(getattr(text, "num_hidden_layers", 0) or 0) > HEADS_ONLY_ABOVE_BLOCKS else -1


def _train_whole(
    config: MultiHeadRewardConfig,
    model: MultiHeadRewardModel,
    tokenizer: Any,
    data: LabelledData,
    train_idx: Sequence[int],
    progress: Callable[[str], None],
) -> None:
    """The backbone and the heads trained together (summed cross-entropy, transformers' Trainer)."""
    import datasets

    enc = encode(tokenizer, model.spec, [data.prompts[i] for i in train_idx], [data.responses[i] for i in train_idx],
                 padding=False)  # fmt: skip
    train = datasets.Dataset.from_dict(
        {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": data.labels[train_idx].tolist()}
    )
    config.remove_unused_columns = False
    trainer = MultiHeadTrainer(model=model, args=config, train_dataset=train, data_collator=_PairCollator(tokenizer))
    use_progress_lines(trainer, progress, prefix="multihead: ")
    trainer.train()


def feature_cache_for(root: str | Path, source: str, spec: MultiHeadSpec, layer: int | None) -> Any:
    """The cache of the pooled features the heads read: they depend on the backbone, the block and the pooling."""
    from pluralign.models.feature_cache import FeatureCache
    from pluralign.models.frozen_layers import cache_identity

    identity = cache_identity(source, 0) + f":multihead:{spec.pooling}-of-block{layer or 'last'}"
    return FeatureCache(root, identity, {"pooling": spec.pooling, "pooling_layer": layer})


def _fit_heads(
    config: MultiHeadRewardConfig,
    model: MultiHeadRewardModel,
    tokenizer: Any,
    data: LabelledData,
    rows: Sequence[dict[str, Any]],
    train_idx: Sequence[int],
    eval_idx: Sequence[int],
    source: str,
    layer: int | None,
    timer: StageTimer,
    progress: Callable[[str], None],
) -> list[np.ndarray]:
    """``--trainable_layers 0``: the pooled features of every sample, computed once (cached), then each head
    fitted to convergence on the training samples (its L2 penalty cross-validated by pair unless given);
    returns the held-out class probabilities per head, from the same features."""
    from pluralign.models.feature_cache import fill, ids_key
    from pluralign.training.softmax_head import choose_l2, fit_softmax_head, logits

    with timer("tokenize"):
        enc = encode(tokenizer, model.spec, data.prompts, data.responses, padding=False)
        ids = enc["input_ids"]
        keys = [ids_key(x) for x in ids]
    root = config.feature_cache or Path(config.output_dir) / FEATURE_CACHE
    cache = feature_cache_for(root, source, model.spec, layer)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @torch.no_grad()
    def run_batch(batch: list[list[int]]) -> list[torch.Tensor]:
        width = max(len(x) for x in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, x in enumerate(batch):
            input_ids[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = 1
        pooled = model.features(input_ids.to(device), mask.to(device)).float()
        return [row.half().cpu() for row in pooled]

    with timer("features"):
        model.eval()
        computed = 0
        if is_main_process():  # one process computes, every process then reads the cache
            computed = fill(cache, keys, ids, run_batch, progress=progress)
        wait_for_everyone()
        cache = feature_cache_for(root, source, model.spec, layer)
        feats = torch.stack(cache.get(keys)).float()
    progress(f"multihead: features of {len(keys)} samples ({computed} computed, the rest cached)")
    groups = [str(rows[i].get("pair_id") or f"row:{i}") for i in train_idx]
    x_train, x_eval = feats[list(train_idx)], feats[list(eval_idx)]
    probs = []
    with timer("train"):
        for h, (name, k) in enumerate(zip(model.spec.objectives, model.spec.num_classes)):
            y = torch.as_tensor(data.labels[list(train_idx), h])
            l2 = config.head_l2 if config.head_l2 is not None else choose_l2(x_train, y, k, groups, seed=config.seed)
            weight, bias = fit_softmax_head(x_train, y, k, l2)
            with torch.no_grad():
                model.heads[h].weight.copy_(weight)
                model.heads[h].bias.copy_(bias)
            probs.append(logits(x_eval, weight, bias).softmax(-1).numpy())
            progress(f"multihead: head {name} fitted with L2 penalty {l2:g}")
    return probs


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


def _load_rows(config: MultiHeadRewardConfig, progress: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Samples with label columns. A preference-pairs file gives two samples per pair and, without
    ``--objective``, one head ``preference`` with classes rejected (0) / chosen (1)."""
    from pluralign.data.loading import load_any, to_samples
    from pluralign.data.pairs import load_pairs, pair_id

    if not config.dataset:
        raise DataError("--dataset is required: a hub id or a local jsonl/json/parquet/csv file")
    ds = load_any(config.dataset)
    if "chosen" in ds.column_names or "rejected" in ds.column_names:
        pairs = load_pairs(ds, config.prompt_column, skip_invalid=config.skip_invalid_pairs, report=progress)
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
