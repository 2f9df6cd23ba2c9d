"""Supervised fine-tuning on prompt-completion samples through TRL's SFTTrainer (shared by methods).

Loss is on completion tokens only (TRL's prompt-completion format), EOS is appended by TRL, checkpoints
go to ``output_dir`` and a rerun resumes from the last one. The final model is saved to
``output_dir/final`` and that folder is returned.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pluralign.training.args import precision_for_device
from pluralign.training.progress import use_progress_lines

FINAL = "final"






def run_sft(
    model: str,
    samples: Sequence[dict[str, Any]],
    args,
    output_dir: str | Path,
    peft_config=None,
    tokenizer=None,
    callbacks: Sequence[Any] | None = None,
    **overrides: Any,
) -> Path:
    """Fine-tune ``model`` (folder or hub id, full or adapter) on ``samples`` ({"prompt", "completion"}).

    ``args`` is an SFTConfig (or a subclass such as RiCConfig); ``overrides`` replace its fields for this
    stage (e.g. learning_rate); ``callbacks`` are passed to the trainer. Returns the folder of the saved
    final model. Finished stages are skipped.
    """
    from datasets import Dataset
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    from pluralign.models.builtin import resolve_model

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
    dataset = Dataset.from_list([{"prompt": s["prompt"], "completion": s["completion"]} for s in samples])
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
