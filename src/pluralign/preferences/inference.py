"""Preferences inferred from choices: a user's weights over K objectives from a few pairwise choices.

Any preference-steered policy (RiC, Rewarded Soups, ...) becomes steerable by choices alone: score each
choice's chosen and rejected responses with the K objectives, z-normalise with the fitted statistics, and
fit a Bradley-Terry model on the weighted sum of the z-scores,

    P(chosen > rejected) = sigmoid(s * w . (z(chosen) - z(rejected))),   w on the simplex, s > 0,

by maximum a posteriori with a symmetric Dirichlet prior toward uniform weights (``prior_strength``) and a
log-normal prior on the sharpness ``s`` (centred on ``scale``). With no informative choices the answer is
the uniform preference. Given a :class:`~pluralign.preferences.population_prior.PopulationPrior` learnt
from other users' choices, the answer is instead the posterior mean under that population's prior.

Contexts are validated here once for every method: :func:`validate_context` gives one-line errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pluralign.errors import PreferenceError
from pluralign.preferences.population_prior import PopulationPrior
from pluralign.preferences.weights import Preference

Choice = tuple[Any, Any, Any]


def _is_text(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(m, Mapping) and "content" in m for m in value) and bool(value)
    )


def validate_context(context: Any) -> list[Choice]:
    """Check a user's choices and return them as ``(prompt, chosen, rejected)`` tuples.

    Accepts tuples/lists of three texts or dicts with ``prompt``, ``chosen``, ``rejected``. Raises
    :class:`PreferenceError` with one line naming the bad item.
    """
    if context is None:
        raise PreferenceError("context is None; pass a list of (prompt, chosen, rejected) choices")
    if isinstance(context, (str, bytes, Mapping)) or not isinstance(context, Sequence):
        raise PreferenceError(
            f"context must be a list of (prompt, chosen, rejected) choices, got {type(context).__name__}"
        )
    if len(context) == 0:
        raise PreferenceError(
            "context is empty; give at least one (prompt, chosen, rejected) choice (or leave context unset)"
        )
    out = []
    for i, item in enumerate(context):
        if isinstance(item, Mapping):
            missing = [k for k in ("prompt", "chosen", "rejected") if k not in item]
            if missing:
                raise PreferenceError(
                    f"context item {i} has no {missing[0]!r}; each choice needs prompt, chosen, rejected"
                )
            item = (item["prompt"], item["chosen"], item["rejected"])
        if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 3:
            raise PreferenceError(f"context item {i} is not a (prompt, chosen, rejected) triple: {str(item)[:60]!r}")
        for name, value in zip(("prompt", "chosen", "rejected"), item):
            if not _is_text(value):
                raise PreferenceError(f"context item {i}: {name} must be text, got {type(value).__name__}")
        out.append(tuple(item))
    return out


def score_differences(context: Any, objectives: Any) -> np.ndarray:
    """(n, K) z-score differences chosen - rejected, scored with ``objectives`` (an ObjectiveSet with stats)."""
    from pluralign.data.loading import check_prompt, response_text

    choices = validate_context(context)
    stats = objectives.require_stats()  # one-line DataError when the set has no statistics
    del stats
    prompts = [check_prompt(c[0]) for c in choices]  # messages stay messages (objectives render them)
    chosen = objectives.zscores(objectives.score(prompts, [response_text(c[1]) for c in choices]))
    rejected = objectives.zscores(objectives.score(prompts, [response_text(c[2]) for c in choices]))
    return chosen - rejected


def _names(objectives: Any) -> list[str]:
    if hasattr(objectives, "names"):
        return list(objectives.names)
    names = [str(n) for n in objectives]
    if not names:
        raise PreferenceError("no objectives given; infer_preference needs the K objective names")
    return names


def _fit(diffs: np.ndarray, prior_strength: float, scale: float) -> np.ndarray:
    """MAP weights for the BTL-on-weighted-scores model (see the module docstring)."""
    from scipy.optimize import minimize
    from scipy.special import expit

    k = diffs.shape[1]

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        theta, rho = params[:k], params[k]
        w = np.exp(theta - theta.max())
        w /= w.sum()
        s = np.exp(rho)
        u = diffs @ w  # (n,)
        m = s * u
        nll = np.logaddexp(0.0, -m).sum()
        sig_neg = expit(-m)  # d/dm of log(1 + e^-m) is -sigmoid(-m); expit does not overflow
        d_u = -(sig_neg * s)  # dNLL/du_i
        d_w = diffs.T @ d_u
        d_rho = float(-(sig_neg * m).sum())
        # Dirichlet(1 + prior_strength) log-prior on w, log-normal prior on s around `scale`
        nll -= prior_strength * np.log(w + 1e-12).sum()
        d_w = d_w - prior_strength / (w + 1e-12)
        nll += 0.5 * (rho - np.log(scale)) ** 2
        d_rho += rho - np.log(scale)
        d_theta = w * (d_w - (w * d_w).sum())  # softmax Jacobian
        return float(nll), np.concatenate([d_theta, [d_rho]])

    x0 = np.concatenate([np.zeros(k), [np.log(scale)]])
    res = minimize(objective, x0, jac=True, method="L-BFGS-B")
    theta = res.x[:k]
    w = np.exp(theta - theta.max())
    return w / w.sum()


def infer_preference(
    context: Any,
    objectives: Any,
    prior_strength: float = 1.0,
    scale: float = 4.0,
    prior: PopulationPrior | None = None,
) -> Preference:
    """Estimate a user's :class:`Preference` over ``objectives`` from a few pairwise choices.

    ``context``: a list of ``(prompt, chosen, rejected)`` choices, scored with ``objectives`` (an
    ObjectiveSet with fitted statistics); or an (n, K) array of precomputed z-score differences
    chosen - rejected, with ``objectives`` an ObjectiveSet or the K names.
    ``prior_strength``: pull toward uniform weights (0 = none); ``scale``: prior sharpness of the choices.
    ``prior``: a population's prior (:meth:`PopulationPrior.fit` on other users' choices); when given, the
    posterior mean under it replaces the MAP fit and ``prior_strength`` / ``scale`` are not used.
    """
    names = _names(objectives)
    if isinstance(context, np.ndarray):
        diffs = np.asarray(context, dtype=np.float64)
        if diffs.ndim != 2 or diffs.shape[1] != len(names):
            raise PreferenceError(
                f"score differences must have shape (n, {len(names)}), one column per objective; got {diffs.shape}"
            )
        if diffs.shape[0] == 0:
            raise PreferenceError("context is empty; give at least one choice")
        if not np.isfinite(diffs).all():
            raise PreferenceError("score differences contain NaN or infinite values")
    else:
        if not hasattr(objectives, "zscores"):
            raise PreferenceError(
                "to infer a preference from (prompt, chosen, rejected) choices, pass the model's ObjectiveSet"
            )
        diffs = score_differences(context, objectives)
    if prior_strength < 0 or scale <= 0:
        raise PreferenceError("prior_strength must be >= 0 and scale > 0")
    if prior is not None:
        if prior.k != len(names):
            raise PreferenceError(f"the population prior is over {prior.k} objectives, not {len(names)}")
        w = prior.posterior_mean(diffs)
    else:
        w = _fit(diffs, prior_strength, scale)
    return Preference.from_any([float(x) for x in w / w.sum()], names)


def context_tensor(context: Any, embedder: Any, dim: int) -> Any:
    """A user's choices as the context encoder's input: (1, n, 2, dim) embeddings of (chosen, rejected);
    ``None`` (no choices yet) gives an empty set, i.e. the learnt default user."""
    import torch

    if context is None:
        return torch.zeros(1, 0, 2, dim)
    choices = validate_context(context)
    prompts = [c[0] for c in choices]
    vecs = torch.from_numpy(embedder.embed(prompts + prompts, [c[1] for c in choices] + [c[2] for c in choices]))
    if vecs.shape[1] != dim:
        raise PreferenceError(f"embedding size {vecs.shape[1]} does not match the model's {dim}; same encoder?")
    n = len(choices)
    return torch.stack([vecs[:n], vecs[n:]], dim=1).unsqueeze(0)
