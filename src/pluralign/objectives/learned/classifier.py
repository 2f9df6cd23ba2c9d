"""A trained classifier reward model: ``score(prompts, responses)``, context-free.

It is a plain Hugging Face sequence-classification model, scored through the same objective class as any
hub reward model (:class:`pluralign.objectives.hf.HFRewardModel`) with the input convention it was
trained with (from ``pluralign.json``), so training and scoring truncate long dialogues alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pluralign.errors import PreferenceError
from pluralign.models.manifest import Manifest
from pluralign.objectives.hf import HFRewardModel


class ClassifierRewardModel:
    """r(x, y): the classifier's single logit."""

    def __init__(self, model_dir: Path, manifest: Manifest, device: str | None = None, batch_size: int = 32) -> None:
        e = manifest.extra
        self.manifest = manifest
        self.model_dir = Path(model_dir)
        self.objective = HFRewardModel(
            manifest.objectives[0] if manifest.objectives else "reward",
            str(model_dir),
            input_format=e.get("input_format", "concat"),
            append_eos=bool(e.get("append_eos", False)),
            max_length=int(e.get("max_length", 256)),
            chat_template=bool(e.get("chat_template", False)),
            pooling=str(e.get("pooling", "model")),  # folders saved before pooling was recorded: the model's own
            batch_size=batch_size,
            device=device,
        )

    def score(
        self, prompts: Sequence[Any], responses: Sequence[Any], context: Sequence[Any] | None = None
    ) -> list[float]:
        if context is not None:
            raise PreferenceError(
                "a classifier reward model cannot use a context; train --type npbtl for few-shot users"
            )
        return self.objective.score(list(prompts), list(responses))


def load(model_dir: Path, manifest: Manifest, **kwargs: Any) -> ClassifierRewardModel:
    return ClassifierRewardModel(Path(model_dir), manifest, **kwargs)
