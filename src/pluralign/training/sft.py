"""Supervised fine-tuning on prompt-completion samples through TRL's SFTTrainer (shared by methods).

The samples are tokenised here, not by TRL, under the rules of :mod:`pluralign.models.sequences`: the
prompt's ids are exactly those generation feeds the model (one BOS where the tokenizer uses one), the
response is stripped and joined after one space (or directly after whitespace), EOS is appended, and
over ``max_length`` the prompt's oldest tokens go first (the response, its EOS and the prompt's end stay;
a sample whose response leaves the prompt under a quarter of ``max_length`` is dropped and counted).
Conversational prompts are rendered with the chat template, as generation renders them. Loss is on
the response and EOS only; checkpoints go to ``output_dir`` and a rerun resumes from the last one. The
final model is saved to ``output_dir/final`` and that folder is returned.

With TRL's ``padding_free`` each batch is one row of its sequences end to end, told apart by their
position ids (transformers masks attention within each), so no step computes padding: the same loss and
gradients as padded batches, about a third less compute on the chat worlds' mixed lengths. The rows are
truncated here, so TRL's ``max_length`` is not needed then.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pluralign.errors import DataError
from pluralign.training.args import precision_for_device
from pluralign.training.progress import use_progress_lines

FINAL = "final"


def sft_rows(tokenizer: Any, samples: Sequence[dict[str, Any]], max_length: int | None) -> tuple[list[dict], int]:
    """Tokenised SFT rows ``{"input_ids", "labels"}`` of ``samples`` ({"prompt", "completion"}) and how many
    were dropped as too long (:func:`pluralign.models.sequences.sft_example`)."""
    from pluralign.data.loading import response_text
    from pluralign.generation.prompts import render_prompt
    from pluralign.models.sequences import adds_bos, sft_example

    bos = adds_bos(tokenizer)
    rows, dropped = [], 0
    for s in samples:
        row = sft_example(tokenizer, render_prompt(tokenizer, s["prompt"]), response_text(s["completion"]), max_length, bos)
        if row is None:
            dropped += 1
        else:
            rows.append(row)
    return rows, dropped


def run_sft(
    model: str,
    samples: Sequence[dict[str, Any]],
    args,
    output_dir: str | Path,
    peft_config=None,
    tokenizer=None,
    callbacks: Sequence[Any] | None = None,
    progress: Callable[[str], None] | None = None,
    **overrides: Any,
) -> Path:
    """Fine-tune ``model`` (folder or hub id, full or adapter) on ``samples`` ({"prompt", "completion"}).

    ``args`` is an SFTConfig (or a subclass such as RiCConfig); ``overrides`` replace its fields for this
    stage (e.g. learning_rate); ``callbacks`` are passed to the trainer; ``progress`` hears how many
    over-long samples were dropped. Returns the folder of the saved final model. Finished stages are skipped.
    """
    from datasets import Dataset
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    from pluralign.models.builtin import resolve_model
    from pluralign.models.loading import load_tokenizer

    model = resolve_model(model)
    output_dir = Path(output_dir)
    final = output_dir / FINAL
    if (final / "config.json").is_file() or (final / "adapter_config.json").is_file():
        return final
    base_fields = {f.name for f in dataclasses.fields(SFTConfig) if f.init}
    values = {k: getattr(args, k) for k in base_fields if hasattr(args, k)}
    values.update(overrides)
    values.update(output_dir=str(output_dir), save_strategy=values.get("save_strategy", "steps"))
    values.setdefault("report_to", "none")
    values.update(precision_for_device(values))
    sft_args = SFTConfig(**values)
    if tokenizer is None:
        tokenizer = load_tokenizer(model)
    rows, dropped = sft_rows(tokenizer, samples, sft_args.max_length)
    if not rows:
        raise DataError(
            f"every one of the {len(samples)} samples has a response too long for max_length={sft_args.max_length}; "
            "raise max_length"
        )
    if dropped and progress:
        progress(f"sft: dropped {dropped} of {len(samples)} samples whose response leaves the prompt under a "
                 f"quarter of max_length={sft_args.max_length}")  # fmt: skip
    if sft_args.padding_free and not sft_args.packing:
        sft_args.max_length = None  # truncated above; TRL refuses padding_free with a max_length it cannot enforce
    dataset = Dataset.from_list(rows)
    model_arg: Any = model
    if (Path(model) / "adapter_config.json").is_file():
        from peft import AutoPeftModelForCausalLM

        model_arg = AutoPeftModelForCausalLM.from_pretrained(model, is_trainable=True)
        peft_config = None
    trainer = SFTTrainer(
        model=model_arg,
        args=sft_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=list(callbacks) if callbacks else None,
    )
    stage = output_dir.parent.name if output_dir.name == "sft" else output_dir.name  # RiC: online_1/sft
    use_progress_lines(trainer, prefix=f"sft {stage}: ")
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    trainer.train(resume_from_checkpoint=last)
    trainer.save_model(str(final))
    if trainer.accelerator.is_main_process and tokenizer is not None:
        tokenizer.save_pretrained(str(final))
    trainer.accelerator.wait_for_everyone()
    return final
