"""Any reward model pluralign trained (btl, npbtl, multihead, classifier) as an objective.

Spec forms: ``--objective harmless=runs/rm`` (a directory whose ``pluralign.json`` names a reward-model
type), ``harmless=reward_model:runs/rm``, or in YAML::

    objectives:
      - {name: harmless, type: reward_model, model: runs/rm}
      - {name: me, type: reward_model, model: runs/npbtl, context: my_choices.jsonl}

An NP-BTL model scores for the fixed user whose choices are in ``context`` (a pairs file:
prompt / chosen / rejected; without one, its learnt default user); in the short form append
``,context=FILE``: ``me=runs/npbtl,context=my_choices.jsonl``. A multi-head model scores with ``head``
(default: the mean over heads).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from pluralign.errors import ConfigError
from pluralign.manifest import MANIFEST_NAME, Manifest
from pluralign.objectives.base import Objective


def is_reward_model_dir(path: str | Path) -> bool:
    """True when ``path`` is a directory whose manifest names a pluralign reward-model type."""
    from pluralign.reward_models import REWARD_MODEL_TYPES

    p = Path(path).expanduser()
    if not (p / MANIFEST_NAME).is_file():
        return False
    try:
        return Manifest.load(p).method in REWARD_MODEL_TYPES
    except Exception:  # a broken manifest is reported when the objective is built
        return False


class TrainedRewardModelObjective(Objective):
    """Scores with ``pluralign.load_reward_model(model).score(prompts, responses, context)``."""

    def __init__(
        self, name: str, model: str, context: str | None = None, head: str | None = None, batch_size: int = 64
    ) -> None:
        from pluralign.reward_models import REWARD_MODEL_TYPES

        self.name = name
        self.model_dir = Path(model).expanduser().resolve()
        manifest = Manifest.load(self.model_dir)
        if manifest.method not in REWARD_MODEL_TYPES:
            raise ConfigError(
                f"objective {name!r}: {model} holds a {manifest.method!r} model, not a reward model "
                f"({', '.join(REWARD_MODEL_TYPES)})"
            )
        self.method = manifest.method
        if context is not None and self.method != "npbtl":
            raise ConfigError(f"objective {name!r}: a {self.method} reward model takes no context; drop 'context'")
        if head is not None and self.method != "multihead":
            raise ConfigError(f"objective {name!r}: only a multihead reward model has heads; drop 'head'")
        self.context_file = str(Path(context).expanduser()) if context else None
        self.context = self._read_context(self.context_file) if self.context_file else None
        self.head = head
        self.batch_size = batch_size

    @staticmethod
    def _read_context(path: str) -> list[tuple[Any, Any, Any]]:
        from pluralign.data.pairs import load_pairs

        if not Path(path).is_file():
            raise ConfigError(f"context file {path!r} does not exist; give a pairs file (prompt, chosen, rejected)")
        return [(p["prompt"], p["chosen"], p["rejected"]) for p in load_pairs(path, report=None)]

    @cached_property
    def reward_model(self) -> Any:
        from pluralign.reward_models import load_reward_model

        return load_reward_model(self.model_dir)

    @property
    def identity(self) -> str:
        stamp = (self.model_dir / MANIFEST_NAME).stat().st_mtime_ns
        ctx = hashlib.sha1(repr(self.context).encode()).hexdigest()[:16] if self.context else "-"
        return f"reward_model:{self.model_dir}:{stamp}:{ctx}:{self.head}"

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        kwargs = {"head": self.head} if self.head else {}
        return list(self.reward_model.score(list(prompts), list(responses), context=self.context, **kwargs))
