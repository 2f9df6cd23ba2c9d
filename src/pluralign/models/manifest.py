"""``pluralign.json``: what a trained model directory is and how to steer it.

Fields: format_version, method, objectives (names), objective_specs, stats (normalisation statistics
per objective), template (the tag / prompt template), mapping (preference -> prompt values), base_model,
and a free ``extra`` mapping for method-specific settings.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pluralign.errors import ModelNotFoundError

MANIFEST_NAME = "pluralign.json"
FORMAT_VERSION = 1


@dataclass
class Manifest:
    method: str
    objectives: list[str]
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    objective_specs: list[dict[str, Any]] = field(default_factory=list)
    template: dict[str, Any] = field(default_factory=dict)
    mapping: str = "linf"
    base_model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @classmethod
    def for_objectives(cls, method: str, objectives: Any, **fields: Any) -> Manifest:
        """A manifest whose objective names, normalisation stats and specs come from one ``ObjectiveSet``."""
        return cls(
            method=method,
            objectives=list(objectives.names),
            stats=objectives.stats_dict(),
            objective_specs=objectives.specs(),
            **fields,
        )

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / MANIFEST_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> Manifest:
        path = Path(model_dir) / MANIFEST_NAME
        if not Path(model_dir).is_dir():
            raise ModelNotFoundError(
                f"model directory {str(model_dir)!r} does not exist; pass a trained model dir to --model"
            )
        if not path.is_file():
            raise ModelNotFoundError(
                f"{str(model_dir)!r} has no {MANIFEST_NAME}; it is not a pluralign model (train one with `pluralign train`)"
            )
        data = json.loads(path.read_text())
        if data.get("format_version", 1) > FORMAT_VERSION:
            raise ModelNotFoundError(
                f"{path} was written by a newer pluralign (format {data['format_version']}); upgrade"
            )
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def is_finished(folder: str | Path, marker: str = MANIFEST_NAME) -> bool:
    """True once a training run wrote its marker, the last file it writes (a model's ``pluralign.json``, an RL
    run's record): a rerun skips finished runs and resumes unfinished ones."""
    return (Path(folder) / marker).is_file()
