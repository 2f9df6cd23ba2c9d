"""A linear softmax head on fixed features, fitted to convergence: a classification head of a frozen backbone.

MOSLIM's reward model (METHODS.md §2) trains one classification head per objective with the summed
per-head cross-entropy. With the backbone frozen, that sum splits into one convex problem per head: a
multinomial logistic regression of the head's K classes on the pooled features. It is fitted here by
L-BFGS to its optimum (no learning rate, no epochs), with an L2 penalty ``l2 / 2 * |W|^2`` on the
weights over standardised features (each dimension divided by its standard deviation on the training
samples), which is what keeps a head on a few hundred samples from memorising them; the bias is free.
:func:`choose_l2` picks the penalty by k-fold cross-validation on the training samples, folds made of
whole groups (the two responses of one preference pair stay together), so no held-out sample decides it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

L2_GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def fit_softmax_head(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, max_iter: int = 500
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight (K, d), bias (K,))`` in the features' own scale (what an ``nn.Linear(d, K)`` holds),
    minimising the mean cross-entropy of ``softmax(W x + b)`` against the classes ``y`` plus the penalty."""
    x = x.double()
    mean = x.mean(0)
    scale = x.std(0).clamp_min(1e-6) if x.shape[0] > 1 else torch.ones(x.shape[1], dtype=torch.float64)
    z = (x - mean) / scale
    w = torch.zeros(num_classes, z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  history_size=20, line_search_fn="strong_wolfe")  # fmt: skip
    target = y.long()

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(z @ w.T + b, target) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    weight = w.detach() / scale
    bias = b.detach() - weight @ mean
    return weight.float(), bias.float()


def logits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x W^T + b`` per sample."""
    return x.float() @ weight.T.float() + bias.float()


def choose_l2(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    groups: Sequence[str] | None = None,
    grid: Sequence[float] = L2_GRID,
    folds: int = 5,
    seed: int = 0,
) -> float:
    """The penalty of ``grid`` with the lowest cross-validated cross-entropy on these samples (``folds``
    folds of whole ``groups``, by default one sample each; ties go to the stronger penalty)."""
    keys = list(groups) if groups is not None else [str(i) for i in range(x.shape[0])]
    distinct = list(dict.fromkeys(keys))
    order = torch.randperm(len(distinct), generator=torch.Generator().manual_seed(seed)).tolist()
    folds = max(2, min(folds, len(distinct)))
    fold_of = {distinct[j]: i % folds for i, j in enumerate(order)}
    fold = torch.tensor([fold_of[k] for k in keys])
    best: tuple[float, float] | None = None
    for l2 in sorted(grid, reverse=True):
        loss = 0.0
        for i in range(folds):
            held = fold == i
            weight, bias = fit_softmax_head(x[~held], y[~held], num_classes, l2)
            loss += float(F.cross_entropy(logits(x[held], weight, bias), y[held].long(), reduction="sum"))
        if best is None or loss < best[0] - 1e-9:
            best = (loss, l2)
    return best[1]
