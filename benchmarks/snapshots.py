"""Snapshots along training, for quality-against-compute curves: a trainer callback and a stopwatch.

:class:`SnapshotCallback` plugs into any 🤗 Trainer (TRL's SFT and RLOO trainers included). Every
``every_steps`` optimizer steps, and when each trainer finishes, it saves the model into
``root/<tag>/<run>/`` (``run`` = the trainer's place inside the method's model directory, e.g.
``runs/w_0.300_0.700`` for a MORLHF run, ``""`` for RiC) and records, for that snapshot, the training
seconds and tokens spent so far. The time spent saving is excluded from the clock, so evaluating the
snapshots later costs the method nothing.

Seconds are counted per run: a run's clock starts where the previous run (another ``run`` key) ended,
so what happens between trainers of one run (RiC's scoring and online generation) is charged to it,
and the front at a tag costs the sum over runs (:func:`tag_totals`). :func:`materialise` turns a tag's
folder into a loadable model directory by copying what the final model directory holds besides weights.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


class Stopwatch:
    """Wall clock with pauses: :meth:`elapsed` leaves out the time spent inside :meth:`paused`."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.excluded = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start - self.excluded

    @contextmanager
    def paused(self):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.excluded += time.perf_counter() - t


@dataclass
class Snapshot:
    tag: str  # the snapshot folder under root: "step_40" (RL runs), "offline_step_125" (a RiC stage)
    run: str  # where the trainer's model goes inside the method's model directory ("" for the root)
    stage: str  # the trainer's output folder name (e.g. "offline", "online_1", "checkpoints")
    step: int
    seconds: float  # training seconds of this run so far (saving and evaluation excluded)
    tokens: float  # tokens seen by this run's trainers so far (Trainer.state.num_input_tokens_seen)


def default_run_key(output_dir: str) -> str:
    """``runs/<name>/checkpoints`` (an RL run) -> ``runs/<name>``; anything else -> ``""`` (one run)."""
    parts = Path(output_dir).parts
    if len(parts) >= 3 and parts[-1] == "checkpoints" and parts[-3] == "runs":
        return f"runs/{parts[-2]}"
    return ""


def default_stage(output_dir: str) -> str:
    """``.../online_2/sft`` -> ``online_2``; ``.../offline`` -> ``offline``; RL runs -> ``rl``."""
    p = Path(output_dir)
    if p.name == "checkpoints":
        return "rl"
    return p.parent.name if p.name == "sft" else p.name


class SnapshotCallback(TrainerCallback):
    """Save the model every ``every_steps`` steps and at each trainer's end; record seconds and tokens."""

    def __init__(
        self,
        root: str | Path,
        stopwatch: Stopwatch | None = None,
        every_steps: int | None = None,
        run_key: Callable[[str], str] = default_run_key,
        stage_name: Callable[[str], str] = default_stage,
    ) -> None:
        self.root = Path(root)
        self.stopwatch = stopwatch or Stopwatch()
        self.every_steps = every_steps
        self.run_key, self.stage_name = run_key, stage_name
        self.snapshots: list[Snapshot] = []
        self.events: list[dict[str, Any]] = []  # each trainer's begin and end on the clock (for profiles)
        self._run: str | None = None
        self._origin = 0.0  # clock reading where the current run started
        self._last_end = 0.0  # clock reading where the last trainer ended
        self._tokens_before = 0.0  # tokens of the current run's earlier trainers
        self._saved_step = -1

    def on_train_begin(self, args, state, control, **kwargs):
        key = self.run_key(args.output_dir)
        if key != self._run:
            self._run, self._origin, self._tokens_before = key, self._last_end, 0.0
        self._saved_step = -1
        self.events.append({"run": key, "stage": self.stage_name(args.output_dir), "begin": self.stopwatch.elapsed()})

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.every_steps and state.global_step % self.every_steps == 0:
            self._snapshot(args, state, model, processing_class)

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self._saved_step != state.global_step:
            self._snapshot(args, state, model, processing_class)
        self._tokens_before += float(state.num_input_tokens_seen or 0)
        self._last_end = self.stopwatch.elapsed()
        self.events[-1]["end"] = self._last_end

    def _snapshot(self, args, state, model, processing_class) -> None:
        seconds = self.stopwatch.elapsed() - self._origin
        stage = self.stage_name(args.output_dir)
        tag = f"step_{state.global_step}" if stage == "rl" else f"{stage}_step_{state.global_step}"
        with self.stopwatch.paused():
            target = self.root / tag / self._run if self._run else self.root / tag
            target.mkdir(parents=True, exist_ok=True)
            unwrapped = getattr(model, "module", model)
            unwrapped.save_pretrained(str(target))
            if processing_class is not None:
                processing_class.save_pretrained(str(target))
            self.snapshots.append(
                Snapshot(
                    tag=tag,
                    run=self._run or "",
                    stage=stage,
                    step=int(state.global_step),
                    seconds=seconds,
                    tokens=self._tokens_before + float(state.num_input_tokens_seen or 0),
                )
            )
            self._saved_step = state.global_step
            (self.root / "snapshots.json").write_text(json.dumps([asdict(s) for s in self.snapshots], indent=2))


def tag_totals(snapshots: list[Snapshot]) -> list[dict[str, Any]]:
    """Per tag (in first-seen order): seconds and tokens summed over runs, and the runs it holds.

    A tag that not every run reached (a run stopped early) is left out: its front would be incomplete.
    """
    runs = {s.run for s in snapshots}
    order: list[str] = []
    by_tag: dict[str, list[Snapshot]] = {}
    for s in snapshots:
        if s.tag not in by_tag:
            order.append(s.tag)
        by_tag.setdefault(s.tag, []).append(s)
    out = []
    for tag in order:
        group = by_tag[tag]
        if {s.run for s in group} != runs:
            continue
        out.append(
            {
                "tag": tag,
                "stage": group[-1].stage,
                "step": group[-1].step,
                "seconds": sum(s.seconds for s in group),
                "tokens": sum(s.tokens for s in group),
            }
        )
    return out


_NOT_COPIED = (".safetensors", ".bin", ".pt", ".jsonl", ".sqlite", ".tmp")


def materialise(snapshot_dir: str | Path, final_model_dir: str | Path) -> Path:
    """Make ``snapshot_dir`` a model directory: copy the final directory's top-level files it lacks.

    The final directory's manifest (pluralign.json), tokenizer and config files come along; the
    snapshot's own weights are kept, and data files (jsonl, sqlite) are not copied.
    """
    snapshot_dir, final_model_dir = Path(snapshot_dir), Path(final_model_dir)
    for f in final_model_dir.iterdir():
        if f.is_file() and not (snapshot_dir / f.name).exists() and not f.name.endswith(_NOT_COPIED):
            shutil.copy2(f, snapshot_dir / f.name)
    return snapshot_dir
