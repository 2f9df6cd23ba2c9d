"""``pluralign train reward-model --type classifier``: fine-tune a pretrained model as a reward model.

TRL's ``RewardTrainer`` trains a one-output sequence-classification model on the pairs (Bradley-Terry
loss); optionally LoRA (merged at the end). The pairs are tokenized here, by :func:`pluralign.models.truncation.
encode_pairs`, so training and scoring keep the same part of long dialogues (the response and the last
prompt tokens). Checkpoints go to ``output_dir/checkpoints`` and a rerun resumes from the last one. The
saved directory is a plain Hugging Face model (safetensors) + tokenizer + ``pluralign.json`` (method
"classifier") + ``eval_results.json`` (pairwise accuracy on the held-out pairs).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pluralign.data.pairs import load_pairs, split_pairs
from pluralign.errors import DataError
from pluralign.models.truncation import PairFormat, encode_pairs
from pluralign.objectives.trained import record_held_out_accuracy
from pluralign.reward_models.classifier.config import ClassifierRewardConfig
from pluralign.training.manifest import Manifest
from pluralign.training.progress import use_progress_lines
from pluralign.training.state import is_main_process

CHECKPOINTS = "checkpoints"


def resolve_backbone(name: str | None) -> str:
    """The backbone folder or hub id; ``None`` and ``builtin:all-minilm-l6-v2`` are the bundled MiniLM."""
    from pluralign.models.embeddings import BUILTIN_MINILM, resolve_encoder

    if name in (None, "", BUILTIN_MINILM):
        return resolve_encoder(None)
    from pluralign.models.loading import check_model_source

    return check_model_source(str(name), what="reward-model backbone (--model_name_or_path)")


def pair_format(tokenizer: Any) -> PairFormat:
    """TRL's convention: prompt + response + EOS (where the tokenizer has one) as one text."""
    return PairFormat("concat", suffix=tokenizer.eos_token or "")


def tokenize_pairs(tokenizer: Any, pairs: Sequence[dict[str, Any]], max_length: int) -> dict[str, list]:
    """``{"chosen_ids", "rejected_ids"}``: RewardTrainer's pre-tokenized columns."""
    prompts = [p["prompt"] for p in pairs]
    fmt = pair_format(tokenizer)
    chosen = encode_pairs(tokenizer, prompts, [p["chosen"] for p in pairs], max_length, fmt)["input_ids"]
    rejected = encode_pairs(tokenizer, prompts, [p["rejected"] for p in pairs], max_length, fmt)["input_ids"]
    return {"chosen_ids": chosen, "rejected_ids": rejected}


class _DropLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


def load_backbone(name: str, trust_remote_code: bool = False) -> tuple[Any, Any]:
    """A one-output sequence-classification model and its tokenizer (pad token set)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from pluralign.models.loading import load_error

    loader_log = hf_logging.get_logger("transformers.modeling_utils")
    quiet = _DropLoadReport()  # the new score head is "missing from the checkpoint" by design
    loader_log.addFilter(quiet)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(
            name, num_labels=1, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise load_error(name, "reward-model backbone (--model_name_or_path)", exc) from exc
    finally:
        loader_log.removeFilter(quiet)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def train_classifier(
    config: ClassifierRewardConfig,
    pairs: Sequence[dict[str, Any]] | None = None,
    progress: Callable[[str], None] = print,
) -> Path:
    """Train, save and evaluate a classifier reward model; returns the output directory."""
    from datasets import Dataset
    from peft import PeftModel
    from transformers.trainer_utils import get_last_checkpoint
    from trl import RewardTrainer

    start = time.perf_counter()
    if pairs is None:
        if not config.dataset:
            raise DataError("--dataset is required: a pairs file (prompt/chosen/rejected) or hub id")
        pairs = load_pairs(
            config.dataset, config.prompt_column, skip_invalid=config.skip_invalid_pairs, report=progress
        )
    pairs = list(pairs)[: config.max_pairs or None]
    train_pairs, held_pairs = split_pairs(pairs, config.eval_fraction, config.seed)
    if len(train_pairs) < 2:
        raise DataError(f"{len(train_pairs)} training pairs; a classifier reward model needs at least 2")
    backbone = resolve_backbone(config.model_name_or_path)
    model, tokenizer = load_backbone(backbone, config.trust_remote_code)
    train_ds = Dataset.from_dict(tokenize_pairs(tokenizer, train_pairs, config.max_length))
    out = Path(config.output_dir)
    checkpoints = out / CHECKPOINTS
    args = dataclasses.replace(config, output_dir=str(checkpoints))
    args.remove_unused_columns = False
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        processing_class=tokenizer,
        peft_config=config.peft_config(),
    )
    use_progress_lines(trainer, progress, prefix="classifier: ")
    progress(f"classifier: training {Path(backbone).name} on {len(train_pairs)} pairs ({len(held_pairs)} held out)")
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if last:
        progress(f"classifier: resuming from {last}")
    trainer.train(resume_from_checkpoint=last)
    train_seconds = time.perf_counter() - start
    if trainer.accelerator.is_main_process:  # under accelerate launch: one process writes the model
        trained = trainer.accelerator.unwrap_model(trainer.model)
        if isinstance(trained, PeftModel):
            trained = trained.merge_and_unload()
        trained.save_pretrained(str(out), safe_serialization=True)
        tokenizer.save_pretrained(str(out))
        Manifest(
            method="classifier",
            objectives=[config.objective_name],
            base_model=config.model_name_or_path or "builtin:all-minilm-l6-v2",
            extra={
                "input_format": "concat",
                "append_eos": bool(tokenizer.eos_token),
                "max_length": config.max_length,
                "train_pairs": len(train_pairs),
                "config": json.loads(json.dumps(config.to_dict(), default=str)),
            },
        ).save(out)
        record_held_out_accuracy(
            out, held_pairs, {"train_pairs": len(train_pairs), "train_seconds": round(train_seconds, 1)}, progress
        )
    trainer.accelerator.wait_for_everyone()
    del trainer
    if is_main_process():
        shutil.rmtree(checkpoints, ignore_errors=True)
    progress(f"saved classifier reward model to {out} ({train_seconds:.0f}s)")
    return out


def run(argv: Sequence[str]) -> int:
    from pluralign.config import parse_config

    config = parse_config(ClassifierRewardConfig, argv, prog="pluralign train reward-model --type classifier")
    train_classifier(config)
    return 0
