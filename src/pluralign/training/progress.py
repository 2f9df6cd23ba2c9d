"""Trainer logs as pluralign progress lines, instead of transformers' raw log dictionaries, and the wall
seconds of a run's stages (:class:`StageTimer`).

With ``disable_tqdm`` (every pluralign demo sets it), a 🤗 Trainer prints each log as a Python dict of
20-odd keys (``PrinterCallback``). :func:`use_progress_lines` swaps that for one short line per log, the
few numbers a user watches (loss, reward, KL, DPO margins, learning rate), in pluralign's own format.
With progress bars on, the trainer's own display is left as it is.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from transformers import PrinterCallback, TrainerCallback

# what a user watches, in this order, under short names (SFT, DPO, RLOO, reward models)
SHOWN = {
    "loss": "loss",
    "reward": "reward",
    "kl": "kl",
    "rewards/margins": "margin",
    "rewards/accuracies": "pair acc",
    "accuracy": "acc",
    "eval_loss": "eval loss",
    "eval_accuracy": "eval acc",
    "learning_rate": "lr",
}


def format_log(logs: dict[str, Any], step: int, max_steps: int, prefix: str = "") -> str:
    """``prefix step 20/48: loss 1.234, lr 5e-04``; the end-of-training log becomes its summary line."""
    if "train_loss" in logs:  # the summary at the end (step logs may carry train_runtime too: token counting)
        runtime = logs.get("train_runtime")
        took = f" in {runtime:.0f}s" if isinstance(runtime, int | float) else ""
        return f"{prefix}trained {step} steps{took}, mean loss {logs['train_loss']:.4g}"
    parts = []
    for key, name in SHOWN.items():
        v = logs.get(key)
        if isinstance(v, int | float):
            parts.append(f"{name} {v:.1e}" if key == "learning_rate" else f"{name} {v:.4g}")
    return f"{prefix}step {step}/{max_steps}: " + (", ".join(parts) or "logged")


class ProgressLineCallback(TrainerCallback):
    """Print each trainer log as one :func:`format_log` line (main process only)."""

    def __init__(self, progress: Callable[[str], None] | None = print, prefix: str = "") -> None:
        self.progress = progress or (lambda _: None)
        self.prefix = prefix

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.progress(format_log(logs, state.global_step, state.max_steps, self.prefix))


def use_progress_lines(trainer: Any, progress: Callable[[str], None] | None = print, prefix: str = "") -> Any:
    """Replace the raw log dicts of a trainer with ``disable_tqdm`` by progress lines; returns the trainer."""
    if getattr(trainer.args, "disable_tqdm", False):
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(ProgressLineCallback(progress, prefix))
    return trainer


@contextlib.contextmanager
def library_bars_off(args: Any) -> Iterator[None]:
    """With ``disable_tqdm``: no bars from library code that reads only ``TQDM_DISABLE`` (TRL's DPO draws one
    while it precomputes reference log-probabilities, inside the trainer's constructor)."""
    if not getattr(args, "disable_tqdm", False) or "TQDM_DISABLE" in os.environ:
        yield
        return
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        os.environ.pop("TQDM_DISABLE", None)


class StageTimer:
    """Wall seconds per named stage of a run (what ``eval_results.json`` reports as ``stage_seconds``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - start, 1)

    def line(self) -> str:
        return ", ".join(f"{k} {v:.0f}s" for k, v in self.seconds.items())
