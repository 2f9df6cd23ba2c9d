"""One DPO stage (train, save, resume) and its config, shared by DPO, each SPO round and each MODPO member.

A stage directory is finished when its ``pluralign.json`` exists (written last, after the weights and
the tokenizer); an unfinished one resumes from its last checkpoint in ``<stage>/checkpoints``.
"""

from __future__ import annotations

import dataclasses
import gc
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trl

from pluralign.data.dimension_pairs import Pairs, load_dimension_pairs
from pluralign.errors import ConfigError
from pluralign.models.manifest import Manifest, is_finished
from pluralign.models.sequences import trl_pair
from pluralign.models.state import is_main_process, shared_dataset, wait_for_everyone
from pluralign.training.args import DevicePrecisionMixin, LoraMixin
from pluralign.training.margin_dpo import MARGIN_COLUMN, REF_COLUMNS, MarginDPOTrainer
from pluralign.training.progress import library_bars_off, use_progress_lines

CHECKPOINTS = "checkpoints"
Progress = Callable[[str], None]


def say(progress: Progress | None, msg: str) -> None:
    """Report ``msg`` through ``progress`` when there is one."""
    if progress:
        progress(msg)


def stage_is_done(stage_dir: str | Path) -> bool:
    return is_finished(stage_dir)


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
    ref_logps: Any = None,
) -> MarginDPOTrainer:
    """The trainer of one stage: ``model`` is the starting policy and the reference; optional margins, and
    optionally ``model``'s own log-probabilities of the pairs (``(N, 2)``, from
    :func:`~pluralign.training.pair_logps.pair_logps`), which spare TRL's reference pass."""
    rows = [trl_pair(tokenizer, p["prompt"], p["chosen"], p["rejected"]) for p in pairs]
    if margins is not None:
        rows = [{**r, MARGIN_COLUMN: float(m)} for r, m in zip(rows, margins)]
    if ref_logps is not None:
        rows = [{**r, REF_COLUMNS[0]: float(c), REF_COLUMNS[1]: float(j)} for r, (c, j) in zip(rows, ref_logps)]
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
    ref_logps: Any = None,
) -> Path:
    """Train DPO (with an optional per-pair margin) from ``model`` on ``pairs``; returns the saved stage dir.

    The starting model is also the reference (``ref_logps``: its log-probabilities of the pairs, when they
    are known already). A finished stage is returned as is; an interrupted one resumes from its last
    checkpoint.
    """
    from transformers.trainer_utils import get_last_checkpoint

    stage_dir = Path(stage_dir)
    if stage_is_done(stage_dir):
        return stage_dir
    trainer = build_stage_trainer(model, pairs, config, stage_dir, tokenizer, margins, beta, ref_logps)
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


@dataclass
class DimensionDPOConfig(DevicePrecisionMixin, LoraMixin, trl.DPOConfig):
    """TRL's DPOConfig plus where the starting model and each dimension's pairs come from.

    Reference log-probabilities are precomputed once per pair by default (so no reference model stays
    in memory during training), and on a machine without a GPU training runs in float32.
    """

    model_name_or_path: str | None = field(default=None, metadata={"help": "starting (SFT) model: folder or hub id"})
    dataset: list[str] = field(
        default_factory=list,
        metadata={"help": "PATH (PKU-SafeRLHF / HelpSteer-style ratings) or NAME=PATH (plain pairs of dimension NAME)"},
    )
    dimensions: list[str] = field(
        default_factory=list, metadata={"help": "dimensions to use, in order (default: as found in the datasets)"}
    )
    max_pairs: int | None = field(default=None, metadata={"help": "keep at most this many pairs per dimension"})
    min_rating_gap: float = field(default=1.0, metadata={"help": "ratings data: smallest rating gap that makes a pair"})
    use_peft: bool = field(
        default=False, metadata={"help": "train LoRA adapters (merged into full weights when each stage ends)"}
    )
    lora_r: int = field(default=64, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=128, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: list[str] | None = field(default=None, metadata={"help": "LoRA target modules (auto)"})
    precompute_ref_log_probs: bool = field(
        default=True, metadata={"help": "precompute reference log-probs once (no reference model kept in memory)"}
    )

    def __post_init__(self) -> None:
        import torch

        if self.bf16 is None and not self.fp16 and not torch.cuda.is_available():
            self.bf16 = False  # TRL defaults to bf16, which is slow or missing on CPUs
        super().__post_init__()

    def require_model(self) -> str:
        if not self.model_name_or_path:
            raise ConfigError("--model_name_or_path is required: the starting (SFT) model folder or hub id")
        from pluralign.models.builtin import resolve_model

        return resolve_model(self.model_name_or_path)
