"""Sequence log-probabilities of preference pairs under a model, computed once and cached per pair.

SPO's margin needs every earlier round's log-probabilities on the current round's pairs, MODPO's
implicit-reward margins need a trained model's and its reference's. Keeping those models in memory
would multiply the memory of training, so each model is loaded alone, scored through TRL's own
reference pass (``precompute_ref_log_probs``, so the numbers match what DPOTrainer uses exactly),
freed, and its log-probabilities stored in a :class:`~pluralign.objectives.scoring.ScoreCache` keyed by the
model's weights file and the pair.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.models.sequences import trl_pair
from pluralign.objectives.scoring import ScoreCache
from pluralign.training.progress import library_bars_off

WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors", "model.safetensors.index.json", "config.json")
INDEX_COLUMN = "pair_index"


def pair_key(pair: dict[str, Any]) -> str:
    """A stable key for one (prompt, chosen, rejected) triple."""
    text = "\x00".join(repr(pair[k]) for k in ("prompt", "chosen", "rejected"))
    return hashlib.sha1(text.encode()).hexdigest()


def model_fingerprint(model: str | Path) -> str:
    """Path plus size and modification time of the weights, so retrained weights never reuse old entries."""
    path = Path(model)
    for name in WEIGHT_FILES:
        f = path / name
        if f.is_file():
            st = f.stat()
            return f"{path.resolve()}:{name}:{st.st_size}:{st.st_mtime_ns}"
    return str(model)  # a hub id: its revision is fixed by the id


def logps_identity(model: str | Path, args: Any) -> str:
    """Cache identity: the model and every option that changes how TRL computes a sequence log-prob."""
    # "bos1-join": rows begin with one BOS and join text responses by pluralign.models.sequences' rule
    return f"logps:{model_fingerprint(model)}:{args.max_length}:{args.truncation_mode}:{args.ld_alpha}:bos1-join"


def pair_logps(
    model: str | Path,
    pairs: Sequence[dict[str, Any]],
    args: Any,
    tokenizer: Any,
    cache: ScoreCache | None = None,
) -> np.ndarray:
    """``(N, 2)`` array of [log pi(chosen | prompt), log pi(rejected | prompt)] for each pair.

    ``args`` is a DPOConfig (max_length, truncation, batch size and precision are taken from it). Pairs
    TRL drops (prompt alone longer than max_length) get NaN. Only pairs missing from ``cache`` are scored.
    """
    keys = [pair_key(p) for p in pairs]
    ident = logps_identity(model, args)
    chosen = cache.get(ident + ":chosen", keys) if cache else {}
    rejected = cache.get(ident + ":rejected", keys) if cache else {}
    todo = sorted({k: i for i, k in enumerate(keys) if k not in chosen or k not in rejected}.values())
    if todo:
        new = _score_with_trl(str(model), [pairs[i] for i in todo], args, tokenizer)
        new_chosen = {keys[i]: float(c) for i, (c, _) in zip(todo, new) if np.isfinite(c)}
        new_rejected = {keys[i]: float(r) for i, (_, r) in zip(todo, new) if np.isfinite(r)}
        chosen.update(new_chosen)
        rejected.update(new_rejected)
        if cache is not None:
            cache.put(ident + ":chosen", new_chosen)
            cache.put(ident + ":rejected", new_rejected)
    nan = float("nan")
    return np.array([[chosen.get(k, nan), rejected.get(k, nan)] for k in keys], dtype=np.float64)


def implicit_reward_margins(
    model: str | Path,
    reference: str | Path,
    pairs: Sequence[dict[str, Any]],
    args: Any,
    tokenizer: Any,
    cache: ScoreCache | None = None,
) -> np.ndarray:
    """Per pair, ``[log pi(y_w) - log ref(y_w)] - [log pi(y_l) - log ref(y_l)]``: the gap of ``model``'s
    implicit reward against ``reference`` (above 0: it ranks chosen first; NaN where TRL drops the pair).

    A pair and its reverse (the same responses ranked by another dimension) share one scoring: each pair
    is scored with its responses in one fixed order and the sign flipped back."""
    flip = np.array([str(p["chosen"]) > str(p["rejected"]) for p in pairs], dtype=bool)
    ordered = [{**p, "chosen": p["rejected"], "rejected": p["chosen"]} if f else p for p, f in zip(pairs, flip)]
    reward = pair_logps(model, ordered, args, tokenizer, cache) - pair_logps(reference, ordered, args, tokenizer, cache)
    gap = reward[:, 0] - reward[:, 1]
    return np.where(flip, -gap, gap)


def _score_with_trl(model: str, pairs: Sequence[dict[str, Any]], args: Any, tokenizer: Any) -> np.ndarray:
    """Run TRL's reference pass with ``model`` as the reference; the only model in memory while it runs.

    Its scratch folder is ``output_dir/.logps``, shared by every process of ``accelerate launch``.
    """
    from trl import DPOConfig, DPOTrainer

    from pluralign.models.state import is_main_process, shared_dataset, wait_for_everyone

    rows = [{**trl_pair(tokenizer, p["prompt"], p["chosen"], p["rejected"]), INDEX_COLUMN: i} for i, p in enumerate(pairs)]
    trl_fields = {f.name for f in dataclasses.fields(DPOConfig) if f.init}
    values = {k: getattr(args, k) for k in trl_fields if hasattr(args, k)}
    tmp = Path(args.output_dir) / ".logps"
    try:
        values.update(
            output_dir=str(tmp),
            precompute_ref_log_probs=True,
            precompute_ref_batch_size=args.precompute_ref_batch_size or args.per_device_eval_batch_size,
            report_to="none",
            disable_tqdm=True,
        )
        dataset = shared_dataset(rows, tmp / "dataset")
        config = DPOConfig(**values)
        with library_bars_off(config):
            trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
        ds = trainer.train_dataset
        out = np.full((len(pairs), 2), np.nan)
        for i, c, r in zip(ds[INDEX_COLUMN], ds["ref_chosen_logps"], ds["ref_rejected_logps"]):
            out[i] = (c, r)
        del trainer, ds, dataset
        gc.collect()
    finally:
        wait_for_everyone()
        if is_main_process():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
