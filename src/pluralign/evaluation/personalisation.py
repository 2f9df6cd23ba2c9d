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
) -> dict[str, list[float]]:
    """Weights inferred from k of each user's choices, by k: ``cosine`` with the true weights and
    ``accuracy`` (%) of the inferred weights' predictions on ``num_targets`` other choices (not in the context).

    ``diffs[u]``: user u's (P_u, K) signed differences (:func:`signed_differences`); ``weights``: (N, K).
    Each of ``repeats`` draws per user and k takes k + ``num_targets`` distinct choices, the first k the
    context. With k = 0 there is nothing to infer from: the answer is the uniform preference (what
    :func:`infer_preference` returns without informative choices).
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
                    np.asarray(infer_preference(d[ctx], list(names)).weights) if k else np.full(k_count, 1.0 / k_count)
                )
                cosines.append(cosine(inferred, w))
                m = d[tgt] @ inferred
                accs.append(float(np.where(m == 0, 0.5, m > 0).mean()))
        cos_by_k.append(float(np.mean(cosines)))
        acc_by_k.append(100.0 * float(np.mean(accs)))
    return {"cosine": cos_by_k, "accuracy": acc_by_k}


def steering_summary(rewards: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """The user's own reward of a policy's responses under each driving preference, and the share of the
    true weights' effect that steering from choices reproduces.

    ``rewards[c][u]``: user u's mean reward (its weights . the z-scored objectives, averaged over the
    steering prompts) of the responses given under condition ``c``: ``"inferred"`` (the policy driven by
    weights inferred from the user's choices), ``"true"`` (by the user's own weights), ``"equal"`` (by the
    uniform preference: what the policy does for a user it knows nothing about) and ``"base"`` (the
    starting model, not steered).

    ``steer_share = mean_u(R_inferred - R_base) / mean_u(R_true - R_base)``: the share of what steering by
    the true weights adds to the unsteered model that steering by 10 choices adds; 1 = as good as knowing the
    weights. Rewards are z-scores (zero at the response pool's mean), so a plain ratio R_inferred / R_true
    would depend on where zero falls; the unsteered model on the same prompts is the zero both are measured
    from, and the shares are pooled over users (a per-user ratio explodes where steering moves a user
    little). ``equal_share`` is the same share for equal weights, and ``steer_share_over_equal`` the share
    of the gain of the true weights over equal weights (whether knowing the user helps at all); each is
    ``None`` when its denominator is not positive.
    """
    missing = [c for c in ("inferred", "true", "equal", "base") if c not in rewards]
    if missing:
        raise DataError(f"steering rewards lack the {missing[0]!r} condition")
    r = {c: np.asarray(v, dtype=np.float64) for c, v in rewards.items()}

    def share(c: str, zero: str) -> float | None:
        denominator = float((r["true"] - r[zero]).mean())
        return float((r[c] - r[zero]).mean()) / denominator if denominator > 0 else None

    return {
        "steer_share": share("inferred", "base"),
        "equal_share": share("equal", "base"),
        "steer_share_over_equal": share("inferred", "equal"),
        "gain_true_over_base": float((r["true"] - r["base"]).mean()),
        "gain_true_over_equal": float((r["true"] - r["equal"]).mean()),
        "gain_inferred_over_equal": float((r["inferred"] - r["equal"]).mean()),
        "mean_reward": {c: float(v.mean()) for c, v in r.items()},
        "users_true_above_equal": float((r["true"] > r["equal"]).mean()),
        "users_inferred_above_equal": float((r["inferred"] > r["equal"]).mean()),
        "users": int(r["true"].size),
    }
