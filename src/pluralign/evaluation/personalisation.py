"""Personalisation from a few choices, measured on simulated users whose weights are known (METHODS.md §8).

Three measures, each against the number k of the user's own choices given:

- :func:`oracle_accuracy`: how often an observer who knows each user's weights predicts their (noisy)
  choices: the ceiling of any few-shot reward model (NP-BTL's accuracy comes from
  :func:`pluralign.training.user_tasks.accuracy_by_context_size`, on the same users and protocol);
- :func:`inference_by_context_size`: weights inferred from k choices by
  :func:`~pluralign.preferences.inference.infer_preference`: their cosine with the true weights, and how
  often they predict the user's other choices;
- :func:`steering_summary`: a steerable policy driven by weights inferred from the user's choices against
  the same policy driven by the true weights and by equal weights, in the user's own reward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pluralign.errors import DataError
from pluralign.preferences.inference import infer_preference
from pluralign.preferences.population_prior import PopulationPrior
from pluralign.preferences.simulated_users import cosine


def signed_differences(z: np.ndarray, pairs: np.ndarray, choices: np.ndarray) -> np.ndarray:
    """(P, K) z-score differences chosen - rejected of one user's choices (``choices[p]``: the first of
    ``pairs[p]`` was picked)."""
    d = z[pairs[:, 0]] - z[pairs[:, 1]]
    return np.where(np.asarray(choices, dtype=bool)[:, None], d, -d)


def oracle_accuracy(margins: np.ndarray, choices: np.ndarray) -> float:
    """Accuracy (%) of predicting each choice by the sign of the user's true reward margin r(a) - r(b),
    averaged over users ((N, P) arrays; a zero margin counts half)."""
    m, c = np.asarray(margins, dtype=np.float64), np.asarray(choices, dtype=bool)
    right = np.where(m == 0, 0.5, (m > 0) == c)
    return 100.0 * float(right.mean(axis=1).mean())


def inference_by_context_size(
    diffs: Sequence[np.ndarray],
    weights: np.ndarray,
    names: Sequence[str],
    ks: Sequence[int],
    repeats: int = 20,
    num_targets: int = 20,
    seed: int = 0,
    prior: PopulationPrior | None = None,
) -> dict[str, list[float]]:
    """Weights inferred from k of each user's choices, by k: ``cosine`` with the true weights and
    ``accuracy`` (%) of the inferred weights' predictions on ``num_targets`` other choices (not in the context).

    ``diffs[u]``: user u's (P_u, K) signed differences (:func:`signed_differences`); ``weights``: (N, K).
    Each of ``repeats`` draws per user and k takes k + ``num_targets`` distinct choices, the first k the
    context. With k = 0 there is nothing to infer from: the answer is the uniform preference (what
    :func:`infer_preference` returns without informative choices, with or without a population ``prior``).
    """
    if len(diffs) != len(weights):
        raise DataError(f"got choices of {len(diffs)} users but weights of {len(weights)}")
    rng = np.random.default_rng(seed)
    k_count = len(names)
    cos_by_k, acc_by_k = [], []
    for k in ks:
        cosines, accs = [], []
        for d, w in zip(diffs, weights):
            if len(d) < k + num_targets:
                raise DataError(f"a user has {len(d)} choices; need at least k + num_targets = {k + num_targets}")
            for _ in range(repeats):
                idx = rng.permutation(len(d))[: k + num_targets]
                ctx, tgt = idx[:k], idx[k:]
                inferred = (
                    np.asarray(infer_preference(d[ctx], list(names), prior=prior).weights) if k else np.full(k_count, 1.0 / k_count)
                )
                cosines.append(cosine(inferred, w))
                m = d[tgt] @ inferred
                accs.append(float(np.where(m == 0, 0.5, m > 0).mean()))
        cos_by_k.append(float(np.mean(cosines)))
        acc_by_k.append(100.0 * float(np.mean(accs)))
    return {"cosine": cos_by_k, "accuracy": acc_by_k}


def mismatched_rewards(z_true: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(U,) each user's mean reward of the answers the policy gave when driven by the OTHER users' true
    weights: ``z_true`` (U, P, K) z-scores of the answers under user v's weights, ``weights`` (U, K)."""
    r = np.einsum("uk,vpk->uvp", weights, z_true).mean(axis=2)  # r[u, v]: user u's reward of v's answers
    n = len(weights)
    if n < 2:
        raise DataError("a mismatched baseline needs at least two users")
    return (r.sum(axis=1) - np.diag(r)) / (n - 1)


def steering_summary(rewards: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """The user's own reward of a policy's responses under each driving preference, and the share of the
    personalisation gain that steering from choices recovers.

    ``rewards[c][u]``: user u's mean reward (its weights . the z-scored objectives, averaged over the
    steering prompts) of the responses given under condition ``c``: ``"inferred"`` (the policy driven by
    weights inferred from the user's choices), ``"true"`` (by the user's own weights), ``"other"`` (by
    the other users' true weights, :func:`mismatched_rewards`), ``"equal"`` (by the uniform preference:
    what the policy does for a user it knows nothing about) and ``"base"`` (the starting model, not steered).

    ``steer_share = mean_u(R_inferred - R_other) / mean_u(R_true - R_other)``: what driving the policy by
    the user's own weights gains over driving it by someone else's is the personalisation the policy can
    give; the share is how much of it 10 choices recover (1 = as good as knowing the weights, 0 = no better
    than a stranger's weights). Rewards are z-scores (zero at the response pool's mean), so a plain ratio
    R_inferred / R_true would depend on where zero falls; the shares are pooled over users (a per-user
    ratio explodes where steering moves a user little). ``None`` when the true weights gain nothing over
    the other users' (the policy does not personalise: there is no share to take).
    ``steer_share_interval90``: its 5th-95th percentiles over 1000 resamples of the users, and
    ``bootstrap_without_gain`` the share of resamples in which the true weights gained nothing.
    ``steer_share_over_equal`` and ``steer_share_over_base`` measure the same share from equal weights and
    from the unsteered model: whether personalising beats asking for everything, or not steering.
    """
    missing = [c for c in ("inferred", "true", "other", "equal", "base") if c not in rewards]
    if missing:
        raise DataError(f"steering rewards lack the {missing[0]!r} condition")
    r = {c: np.asarray(v, dtype=np.float64) for c, v in rewards.items()}

    def share(zero: str) -> float | None:
        denominator = float((r["true"] - r[zero]).mean())
        return float((r["inferred"] - r[zero]).mean()) / denominator if denominator > 0 else None

    # how much the share moves with which users were drawn: a bootstrap over users (a share whose
    # denominator is near zero in a resample is left out of the interval and counted)
    rng = np.random.default_rng(0)
    gains = np.stack([r["inferred"] - r["other"], r["true"] - r["other"]])
    boot = [gains[:, idx].mean(axis=1) for idx in rng.integers(0, gains.shape[1], size=(1000, gains.shape[1]))]
    shares = [a / b for a, b in boot if b > 0]
    steer = share("other")
    interval = [float(x) for x in np.quantile(shares, [0.05, 0.95])] if shares and steer is not None else None
    return {
        "steer_share": steer,
        "steer_share_interval90": interval,
        "bootstrap_without_gain": 1.0 - len(shares) / len(boot),
        "steer_share_over_equal": share("equal"),
        "steer_share_over_base": share("base"),
        "gain_true_over_other": float((r["true"] - r["other"]).mean()),
        "gain_inferred_over_other": float((r["inferred"] - r["other"]).mean()),
        "gain_true_over_equal": float((r["true"] - r["equal"]).mean()),
        "gain_true_over_base": float((r["true"] - r["base"]).mean()),
        "mean_reward": {c: float(v.mean()) for c, v in r.items()},
        "users_true_above_other": float((r["true"] > r["other"]).mean()),
        "users_true_above_equal": float((r["true"] > r["equal"]).mean()),
        "users": int(r["true"].size),
    }
