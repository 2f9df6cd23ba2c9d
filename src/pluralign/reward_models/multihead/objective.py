"""One head of a multi-head reward model as an Objective (``type: multihead`` in objective specs).

Spec forms: ``helpful=multihead:/path/to/rm`` (the head named like the objective), or a dict
``{"name": "helpful", "type": "multihead", "model": DIR, "head": "helpfulness", "reduce": "expected"}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from pluralign.errors import ConfigError, ModelNotFoundError
from pluralign.objectives.base import Objective
from pluralign.reward_models.multihead.model import CONFIG_FILE
from pluralign.reward_models.multihead.reward_model import REDUCTIONS, MultiHeadRewardScorer


class MultiHeadObjective(Objective):
    """Scores with head ``head`` (default: the objective's name), reduced to a float by ``reduce``."""

    def __init__(
        self,
        name: str,
        model: str,
        head: str | None = None,
        reduce: str = "expected",
        target_class: int | None = None,
        batch_size: int = 64,
    ) -> None:
        if reduce not in REDUCTIONS:
            raise ConfigError(f"objective {name!r}: reduce {reduce!r} is not one of {REDUCTIONS}")
        if not (Path(model) / CONFIG_FILE).is_file():
            raise ModelNotFoundError(
                f"objective {name!r}: {model!r} is not a multi-head reward model (no {CONFIG_FILE}); "
                "train one with `pluralign train reward-model --type multihead`"
            )
        self.name = name
        self.model_dir = str(Path(model).resolve())
        self.head = head or name
        self.reduce = reduce
        self.target_class = target_class
        self.batch_size = batch_size

    @cached_property
    def scorer(self) -> MultiHeadRewardScorer:
        scorer = MultiHeadRewardScorer(self.model_dir, batch_size=self.batch_size)
        scorer.spec.head_index(self.head)  # fail early, naming the heads
        return scorer

    @property
    def identity(self) -> str:
        mtime = (Path(self.model_dir) / "heads.safetensors").stat().st_mtime_ns
        return f"multihead:{self.model_dir}:{mtime}:{self.head}:{self.reduce}:{self.target_class}"

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        scores = self.scorer.head_scores(prompts, responses, reduce=self.reduce, target_class=self.target_class)
        return scores[self.head].tolist()
