"""One DPO stage (train, save, resume) shared by DPO, each SPO round and each MODPO member; and DPO itself.

A stage directory is finished when its ``pluralign.json`` exists (written last, after the weights and
the tokenizer); an unfinished one resumes from its last checkpoint in ``<stage>/checkpoints``.
"""

from __future__ import annotations

import dataclasses
import gc
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trl

from pluralign.data.multidim import Pairs, load_dimension_pairs
from pluralign.manifest import MANIFEST_NAME, Manifest
from pluralign.methods.dpo.config import DimensionDPOConfig
from pluralign.methods.dpo.margin_trainer import MARGIN_COLUMN, MarginDPOTrainer
from pluralign.trainer_logging import library_bars_off, use_progress_lines
from pluralign.training_args import is_main_process, shared_dataset, wait_for_everyone

CHECKPOINTS = "checkpoints"
Progress = Callable[[str], None]


def say(progress: Progress | None, msg: str) -> None:
    """Report ``msg`` through ``progress`` when there is one."""
    if progress:
        progress(msg)


def stage_is_done(stage_dir: str | Path) -> bool:
    return (Path(stage_dir) / MANIFEST_NAME).is_file()


def stage_args(config: DimensionDPOConfig, output_dir: str | Path, **overrides: Any) -> trl.DPOConfig:
    """A plain ``trl.DPOConfig`` with ``config``'s TRL options, writing checkpoints under ``output_dir``."""
    names = {f.name for f in dataclasses.fields(trl.DPOConfig) if f.init}
    values = {k: getattr(config, k) for k in names if hasattr(config, k)}
    values.update(output_dir=str(output_dir), **overrides)
    return trl.DPOConfig(**values)


def load_pairs(config: DimensionDPOConfig) -> dict[str, Pairs]:
    """The config's datasets as ``{dimension: pairs}``."""
    return load_dimension_pairs(config.dataset, config.dimensions, config.max_pairs, config.min_rating_gap, config.seed)


def build_stage_trainer(
    model: str | Path,
    pairs: Pairs,
    config: DimensionDPOConfig,
    stage_dir: str | Path,
    tokenizer: Any,
    margins: Sequence[float] | None = None,
    beta: float | None = None,
) -> MarginDPOTrainer:
    """The trainer of one stage: ``model`` is the starting policy and the reference; optional margins."""
    rows = [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]
    if margins is not None:
        rows = [{**r, MARGIN_COLUMN: float(m)} for r, m in zip(rows, margins)]
    dataset = shared_dataset(rows, Path(stage_dir) / CHECKPOINTS / "dataset")
    overrides = {"beta": beta} if beta is not None else {}
    args = stage_args(config, Path(stage_dir) / CHECKPOINTS, **overrides)
    with library_bars_off(args):
        trainer = MarginDPOTrainer(
            model=str(model),
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=config.peft_config(),
        )
    return use_progress_lines(trainer, prefix=f"{Path(stage_dir).name}: ")


def save_full_weights(trainer: MarginDPOTrainer, stage_dir: Path) -> None:
    """Save the trained policy as full safetensors weights; LoRA adapters are merged first, so the next
    stage (an SPO round, a logp pass, a loaded policy) starts from a plain model folder."""
    from peft import PeftModel

    model = trainer.accelerator.unwrap_model(trainer.model)
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model.save_pretrained(str(stage_dir))


def run_dpo_stage(
    model: str | Path,
    pairs: Pairs,
    config: DimensionDPOConfig,
    stage_dir: str | Path,
    tokenizer: Any,
    manifest: Manifest,
    margins: Sequence[float] | None = None,
    beta: float | None = None,
) -> Path:
    """Train DPO (with an optional per-pair margin) from ``model`` on ``pairs``; returns the saved stage dir.

    The starting model is also the reference. A finished stage is returned as is; an interrupted one
    resumes from its last checkpoint.
    """
    from transformers.trainer_utils import get_last_checkpoint

    stage_dir = Path(stage_dir)
    if stage_is_done(stage_dir):
        return stage_dir
    trainer = build_stage_trainer(model, pairs, config, stage_dir, tokenizer, margins, beta)
    checkpoints = stage_dir / CHECKPOINTS
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    trainer.train(resume_from_checkpoint=last)
    if trainer.accelerator.is_main_process:
        save_full_weights(trainer, stage_dir)
        tokenizer.save_pretrained(str(stage_dir))
        manifest.save(stage_dir)
    trainer.accelerator.wait_for_everyone()
    del trainer
    gc.collect()
    if is_main_process():
        shutil.rmtree(checkpoints, ignore_errors=True)
    wait_for_everyone()
    return stage_dir


def train_dpo(
    config: DimensionDPOConfig, dimension_pairs: dict[str, Pairs] | None = None, progress: Progress | None = print
) -> Path:
    """DPO from the starting model on the pairs of every dimension merged (the trainer shuffles them)."""
    from pluralign.modeling import load_tokenizer

    model = config.require_model()
    dimension_pairs = dimension_pairs if dimension_pairs is not None else load_pairs(config)
    pairs = [p for dim_pairs in dimension_pairs.values() for p in dim_pairs]
    dims = list(dimension_pairs)
    say(progress, f"dpo: {len(pairs)} pairs from {', '.join(dims)}")
    manifest = Manifest(
        method="dpo",
        objectives=dims,
        base_model=model,
        extra={"beta": config.beta, "dimensions": {d: len(p) for d, p in dimension_pairs.items()}},
    )
    tokenizer = load_tokenizer(model, trust_remote_code=config.trust_remote_code)
    return run_dpo_stage(model, pairs, config, config.output_dir, tokenizer, manifest)
