"""MODPO (METHODS.md §4): DPO on one objective's pairs with a margin from the other objectives.

With weights w (w_0 on the trained objective) the reward of a response is
r(y) = (1/w_0) * (beta * log pi(y)/pi_ref(y) - sum_{i>0} w_i R_i(x, y)), and the loss
-log sigmoid(r(y_w) - r(y_l)) is :class:`MarginDPOTrainer` with beta/w_0 and the per-pair margin
(1/w_0) * sum_{i>0} w_i [R_i(y_w) - R_i(y_l)]. R_i is an objective (z-scored by default) or the implicit
DPO reward beta_i * log pi_i(y)/pi_ref_i(y) of a trained model dir. The reward differences are computed
once (scores and log-probabilities are cached in the output dir) and shared by every weight vector;
one model per weight vector is saved under ``members/``, and the output dir is one artifact that
``load_policy`` steers by picking (or interpolating) members.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.data.dimension_pairs import Pairs
from pluralign.errors import ConfigError
from pluralign.methods.modpo.config import MODPOConfig
from pluralign.models.manifest import MANIFEST_NAME, Manifest
from pluralign.models.state import is_main_process, wait_for_everyone
from pluralign.objectives import ObjectiveSet
from pluralign.objectives.scoring import ScoreCache, score_samples
from pluralign.objectives.set import ObjectiveStats, build_objective
from pluralign.training.dpo_stage import Progress, load_pairs, run_dpo_stage, say, stage_is_done
from pluralign.training.pair_logps import pair_logps

MEMBERS = "members"
IMPLICIT = "implicit"


@dataclass
class ImplicitReward:
    """beta * [log pi(y|x) - log pi_ref(y|x)] of a DPO-trained model: a reward without a reward model."""

    name: str
    model: str
    reference: str
    beta: float

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ImplicitReward:
        """From ``{"name", "model": DIR}`` (a pluralign dpo/spo/modpo-member dir), or with explicit
        ``reference`` and ``beta`` for any other DPO model."""
        name, model = spec["name"], str(spec.get("model", ""))
        reference, beta = spec.get("reference"), spec.get("beta")
        if (Path(model) / MANIFEST_NAME).is_file():
            manifest = Manifest.load(model)
            if manifest.extra.get("final"):  # an SPO run: its last round
                model = str(Path(model) / manifest.extra["final"])
                manifest = Manifest.load(model)
            reference = reference or manifest.extra.get("reference") or manifest.base_model
            beta = beta if beta is not None else manifest.extra.get("beta")
        if not reference or beta is None:
            raise ConfigError(
                f"margin objective {name!r}: {model!r} is not a pluralign DPO model dir; give it as "
                "{name, type: implicit, model: DIR, reference: BASE, beta: B}"
            )
        return cls(name=name, model=model, reference=str(reference), beta=float(beta))

    def differences(self, pairs: Pairs, args: Any, cache: ScoreCache) -> np.ndarray:
        """R(y_w) - R(y_l) per pair; each model is loaded alone, log-probs cached."""
        from pluralign.models.loading import load_tokenizer

        tokenizer = load_tokenizer(self.model)
        lp = pair_logps(self.model, pairs, args, tokenizer, cache)
        lp_ref = pair_logps(self.reference, pairs, args, tokenizer, cache)
        return self.beta * ((lp[:, 0] - lp_ref[:, 0]) - (lp[:, 1] - lp_ref[:, 1]))


def parse_margin_source(spec: str | Mapping[str, Any]) -> ImplicitReward | Any:
    """``name=implicit:DIR`` or ``{type: implicit, ...}`` -> ImplicitReward; anything else -> an Objective."""
    if isinstance(spec, Mapping) and spec.get("type") == IMPLICIT:
        return ImplicitReward.from_spec(spec)
    if isinstance(spec, str) and f"={IMPLICIT}:" in spec:
        name, _, model = spec.partition(f"={IMPLICIT}:")
        return ImplicitReward.from_spec({"name": name.strip(), "model": model.strip()})
    return build_objective(spec)


def objective_differences(
    pairs: Pairs, objectives: ObjectiveSet, normalize: bool, cache: ScoreCache, chunk_size: int = 256
) -> dict[str, np.ndarray]:
    """R_i(y_w) - R_i(y_l) per pair for every objective (z-scored with its statistics when ``normalize``).

    Objectives without statistics get them fitted on the pairs' responses.
    """
    samples = [{"prompt": p["prompt"], "response": p[key]} for key in ("chosen", "rejected") for p in pairs]
    scores = score_samples(samples, objectives, cache, chunk_size=chunk_size)
    n = len(pairs)
    out = {}
    for name, values in scores.items():
        values = np.asarray(values, dtype=np.float64)
        if normalize:
            if name not in objectives.stats:
                objectives.stats[name] = ObjectiveStats.fit(values, name)
            values = objectives.stats[name].z(values)
        out[name] = values[:n] - values[n:]
    return out


def member_dir_name(weights: Sequence[float]) -> str:
    return "w_" + "_".join(f"{w:.3f}" for w in weights)


def modpo_margins(differences: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(1/w_0) * sum_{i>0} w_i [R_i(y_w) - R_i(y_l)] for each pair; ``differences`` is (N, K-1)."""
    return differences @ weights[1:] / weights[0]


def train_modpo(
    config: MODPOConfig,
    dimension_pairs: dict[str, Pairs] | None = None,
    objectives: ObjectiveSet | None = None,
    progress: Progress | None = print,
) -> Path:
    """Train one MODPO model per weight vector (resuming finished ones); returns the artifact dir.

    ``objectives`` (with or without statistics) replaces ``config.objective`` as the margin objectives;
    an objective named like the trained dimension is left out of the margin.
    """
    from pluralign.models.loading import load_tokenizer

    start = config.require_model()
    dimension_pairs = dimension_pairs if dimension_pairs is not None else load_pairs(config)
    if len(dimension_pairs) != 1:
        raise ConfigError(
            f"MODPO trains one dimension but the data has {list(dimension_pairs)}; pick one with --dimensions NAME"
        )
    ((dim, pairs),) = dimension_pairs.items()
    sources = (
        [o for o in objectives.objectives if o.name != dim]
        if objectives is not None
        else [parse_margin_source(s) for s in config.objective]
    )
    names = [dim, *(s.name for s in sources)]
    if len(set(names)) != len(names):
        raise ConfigError(f"objective names must be unique and differ from the trained dimension; got {names}")
    weights = config.weight_vectors(names)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    objective_sources = [s for s in sources if not isinstance(s, ImplicitReward)]
    objective_set = (
        ObjectiveSet(
            objective_sources,
            {
                o.name: objectives.stats[o.name]
                for o in objective_sources
                if objectives is not None and o.name in objectives.stats
            },
        )
        if objective_sources
        else None
    )
    cache = ScoreCache(out / "scores.sqlite")
    try:
        diffs: dict[str, np.ndarray] = {}
        if objective_set is not None:
            say(progress, f"modpo: scoring {2 * len(pairs)} responses with {objective_set.names}")
            diffs.update(
                objective_differences(pairs, objective_set, config.normalize_margin, cache, config.score_batch_size)
            )
        for s in sources:
            if isinstance(s, ImplicitReward):
                say(progress, f"modpo: implicit reward {s.name!r} of {s.model}")
                diffs[s.name] = s.differences(pairs, config, cache)
    finally:
        cache.close()
    differences = np.stack([diffs[n] for n in names[1:]], axis=1) if sources else np.zeros((len(pairs), 0))
    tokenizer = load_tokenizer(start, trust_remote_code=config.trust_remote_code)
    members = []
    for i, w in enumerate(weights, start=1):
        member = out / MEMBERS / member_dir_name(w)
        if stage_is_done(member) and Manifest.load(member).objectives != names:
            raise ConfigError(
                f"{member} was trained with objectives {Manifest.load(member).objectives}, not {names}; "
                "use a new --output_dir or the same objectives to resume"
            )
        say(progress, f"modpo: member {i}/{len(weights)} weights {dict(zip(names, w.round(3).tolist()))}")
        manifest = Manifest(
            method="dpo",
            objectives=names,
            base_model=start,
            extra={"weights": w.tolist(), "beta": config.beta / w[0], "modpo_beta": config.beta, "reference": start},
        )
        margins = modpo_margins(differences, w) if sources else None
        run_dpo_stage(start, pairs, config, member, tokenizer, manifest, margins, beta=config.beta / w[0])
        members.append({"weights": w.tolist(), "dir": f"{MEMBERS}/{member.name}"})
    if is_main_process():
        tokenizer.save_pretrained(str(out))
        specs = [{"name": dim, "type": "pairs"}] + [
            {"name": s.name, "type": IMPLICIT, "model": s.model, "reference": s.reference, "beta": s.beta}
            if isinstance(s, ImplicitReward)
            else getattr(s, "spec", {"name": s.name})
            for s in sources
        ]
        Manifest(
            method="modpo",
            objectives=names,
            stats=objective_set.stats_dict() if objective_set is not None else {},
            objective_specs=specs,
            base_model=start,
            extra={
                "members": members,
                "trained_objective": dim,
                "beta": config.beta,
                "normalize_margin": config.normalize_margin,
            },
        ).save(out)
    wait_for_everyone()
    say(progress, f"modpo: {len(members)} members saved in {out}")
    return out
