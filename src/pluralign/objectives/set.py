"""ObjectiveSet: K named objectives, how to build them from specs, and their normalisation statistics."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.errors import ConfigError, DataError
from pluralign.objectives.base import Objective
from pluralign.objectives.builtin import BUILTINS

# the objective types a spec may name; each one's class (or factory) takes (name, **options): source_class
SOURCE_TYPES = ("builtin", "callable", "hf", "multihead", "reward_model", "image")
# which option of each type holds the "source" in the short `name=source` form
SOURCE_KEY = {"builtin": "scorer", "callable": "function", "hf": "model", "reward_model": "model", "image": "scorer"}
QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.7, 0.75, 0.9, 0.95)


def parse_objective_spec(spec: str | Mapping[str, Any]) -> dict[str, Any]:
    """Normalise an objective spec to a dict with ``name`` and ``type``.

    Strings: ``sentiment`` (a built-in), ``name=builtin:verbosity``, ``name=module:function``,
    ``name=org/reward-model`` or ``name=./local/folder`` (Hugging Face), ``name=hf:path``, and
    ``name=DIR`` for a reward model pluralign trained (``,context=FILE`` gives an NP-BTL model its user).
    """
    from pluralign.objectives.trained import is_reward_model_dir

    if isinstance(spec, Mapping):
        d = dict(spec)
        if "name" not in d:
            raise ConfigError(f"objective spec {d} has no 'name'; give each objective a name")
        if "type" not in d and d.get("model") and is_reward_model_dir(str(d["model"])):
            d["type"] = "reward_model"
        if "type" not in d:
            for t, key in SOURCE_KEY.items():
                if key in d:
                    d["type"] = t
                    break
            else:
                raise ConfigError(f"objective {d['name']!r} needs a 'type' ({', '.join(SOURCE_TYPES)})")
        if d["type"] not in SOURCE_TYPES:
            raise ConfigError(
                f"objective {d['name']!r} has unknown type {d['type']!r}; use one of {list(SOURCE_TYPES)}"
            )
        return d
    text = str(spec).strip()
    name, sep, source = text.partition("=")
    if not sep:
        if text in BUILTINS:
            return {"name": text, "type": "builtin", "scorer": text}
        raise ConfigError(
            f"objective {text!r} is not a built-in ({', '.join(BUILTINS)}); write name=source, "
            "e.g. helpful=org/reward-model or score=mymodule:function"
        )
    name, source = name.strip(), source.strip()
    head, csep, context = source.partition(",context=")
    if csep or is_reward_model_dir(source):
        if head.startswith("reward_model:"):
            head = head[len("reward_model:") :]
        if not is_reward_model_dir(head):
            raise ConfigError(f"objective {name!r}: {head!r} is not a reward model pluralign trained (no pluralign.json)")
        return {"name": name, "type": "reward_model", "model": head} | ({"context": context} if csep else {})
    prefix, psep, rest = source.partition(":")
    if psep and prefix in SOURCE_TYPES:
        return {"name": name, "type": prefix, SOURCE_KEY.get(prefix, "model"): rest}
    if source in BUILTINS:
        return {"name": name, "type": "builtin", "scorer": source}
    if psep and "/" not in prefix and not Path(source).exists():
        return {"name": name, "type": "callable", "function": source}
    return {"name": name, "type": "hf", "model": source}


def source_class(kind: str) -> Callable[..., Objective]:
    """The class (or factory) of objective type ``kind``; imported on first use, since several load torch.
    A new reward source adds its type to :data:`SOURCE_TYPES` and a branch here."""
    if kind == "builtin":
        from pluralign.objectives.builtin import BuiltinObjective as cls
    elif kind == "callable":
        from pluralign.objectives.python import CallableObjective as cls
    elif kind == "hf":
        from pluralign.objectives.hf import HFRewardModel as cls
    elif kind == "multihead":
        from pluralign.objectives.learned.multihead import MultiHeadObjective as cls
    elif kind == "reward_model":
        from pluralign.objectives.trained import TrainedRewardModelObjective as cls
    elif kind == "image":
        from pluralign.objectives.image import build_image_objective as cls
    else:
        raise ConfigError(f"unknown objective type {kind!r}; use one of {list(SOURCE_TYPES)}")
    return cls


def build_objective(spec: str | Mapping[str, Any]) -> Objective:
    d = parse_objective_spec(spec)
    cls = source_class(d["type"])
    options = {k: v for k, v in d.items() if k not in ("name", "type")}
    if d["type"] == "builtin" and options.get("scorer") not in BUILTINS:
        raise ConfigError(
            f"objective {d['name']!r}: unknown built-in scorer {options.get('scorer')!r}; use one of {list(BUILTINS)}"
        )
    try:
        obj = cls(d["name"], **options)
    except TypeError as exc:
        raise ConfigError(f"objective {d['name']!r}: {exc}") from exc
    obj.spec = d
    return obj


@dataclass
class ObjectiveStats:
    """Normalisation statistics of one objective's raw scores (and of their z-scores: zmin, zmax)."""

    mean: float
    std: float
    min: float
    max: float
    count: int
    quantiles: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(cls, values: Sequence[float], name: str = "objective") -> ObjectiveStats:
        v = np.asarray(values, dtype=np.float64)
        if v.size == 0:
            raise DataError(f"cannot fit statistics of objective {name!r}: no scores")
        if not np.isfinite(v).all():
            bad = int(np.flatnonzero(~np.isfinite(v))[0])
            raise DataError(f"objective {name!r} produced a NaN or infinite score (row {bad}); fix the reward source")
        std = float(v.std())
        return cls(
            mean=float(v.mean()),
            std=std if std > 1e-8 else 1.0,
            min=float(v.min()),
            max=float(v.max()),
            count=int(v.size),
            quantiles={f"{q:g}": float(np.quantile(v, q)) for q in QUANTILES},
        )

    def z(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) - self.mean) / self.std

    @property
    def zmin(self) -> float:
        return (self.min - self.mean) / self.std

    @property
    def zmax(self) -> float:
        return (self.max - self.mean) / self.std


class ObjectiveSet:
    """K named objectives in a fixed order, plus their fitted statistics (once fitted)."""

    def __init__(self, objectives: Sequence[Objective], stats: Mapping[str, ObjectiveStats] | None = None) -> None:
        names = [o.name for o in objectives]
        if not names:
            raise ConfigError("no objectives given; pass --objective NAME (repeatable) or 'objectives:' in the config")
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(f"objective name {sorted(dup)[0]!r} is used twice; names must be unique")
        self.objectives = list(objectives)
        self.stats: dict[str, ObjectiveStats] = dict(stats or {})

    @classmethod
    def from_specs(cls, specs: Sequence[str | Mapping[str, Any]]) -> ObjectiveSet:
        return cls([build_objective(s) for s in specs])

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objectives]

    def __len__(self) -> int:
        return len(self.objectives)

    def __getitem__(self, name: str) -> Objective:
        for o in self.objectives:
            if o.name == name:
                return o
        raise ConfigError(f"unknown objective {name!r}; the objectives are {self.names}")

    def specs(self) -> list[dict[str, Any]]:
        return [getattr(o, "spec", {"name": o.name}) for o in self.objectives]

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> dict[str, list[float]]:
        """Raw scores per objective (uncached; see :mod:`pluralign.objectives.scoring` for the cached path)."""
        out = {}
        for o in self.objectives:
            vals = o.score(prompts, responses)
            check_finite(vals, o.name)
            out[o.name] = vals
        return out

    def fit_stats(self, scores: Mapping[str, Sequence[float]]) -> None:
        for name in self.names:
            if name not in scores:
                raise DataError(f"no scores for objective {name!r}; score the dataset with it first")
            self.stats[name] = ObjectiveStats.fit(scores[name], name)

    def require_stats(self) -> dict[str, ObjectiveStats]:
        missing = [n for n in self.names if n not in self.stats]
        if missing:
            raise DataError(f"objective {missing[0]!r} has no normalisation statistics; run `pluralign score` first")
        return self.stats

    def zscores(self, scores: Mapping[str, Sequence[float]]) -> np.ndarray:
        """(N, K) z-scored matrix in objective order, using the fitted statistics."""
        stats = self.require_stats()
        return np.stack([stats[n].z(scores[n]) for n in self.names], axis=1)

    def z_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        stats = self.require_stats()
        return (np.array([stats[n].zmin for n in self.names]), np.array([stats[n].zmax for n in self.names]))

    def stats_dict(self) -> dict[str, dict[str, Any]]:
        return {n: asdict(s) for n, s in self.stats.items()}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"objectives": self.specs(), "stats": self.stats_dict()}, indent=2))

    @classmethod
    def load(cls, path: str | Path, build: bool = True) -> ObjectiveSet:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"objective file {str(p)!r} does not exist; run `pluralign score` to create it")
        data = json.loads(p.read_text())
        return cls.from_dict(data, build=build)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], build: bool = True) -> ObjectiveSet:
        specs = data["objectives"]
        objs = [build_objective(s) if build else _NamedOnly(s) for s in specs]
        stats = {n: ObjectiveStats(**s) for n, s in data.get("stats", {}).items()}
        return cls(objs, stats)


class _NamedOnly(Objective):
    """Placeholder that carries a spec and its statistics without loading the scorer."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.name = spec["name"]
        self.spec = dict(spec)

    @property
    def identity(self) -> str:
        return f"spec:{json.dumps(self.spec, sort_keys=True)}"

    def score_batch(self, prompts, responses):  # noqa: ANN001
        raise ConfigError(f"objective {self.name!r} was loaded without its scorer; load with build=True to score")


def check_finite(values: Sequence[float], name: str) -> None:
    for i, v in enumerate(values):
        if v is None or not math.isfinite(float(v)):
            raise DataError(f"objective {name!r} returned a NaN or infinite score for row {i}; fix the reward source")
