"""A linear Bradley-Terry head on fixed features, fitted to convergence: P(a > b) = sigmoid(w . (f_a - f_b)).

With the features fixed (a frozen backbone's pooled output) the loss is convex, so the head is fitted by
L-BFGS to its optimum instead of by a learning rate and a number of epochs; the one knob is the L2 penalty
``l2`` on ``w`` over standardised feature differences (each dimension divided by its standard deviation on
the training pairs), which is what keeps a head on a few hundred pairs from memorising them. A bias would
cancel in every difference, so there is none. :func:`choose_l2` picks the penalty by cross-validation on
the training pairs (k folds of pairs), so no held-out pair decides it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

L2_GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def fit_linear_head(chosen: torch.Tensor, rejected: torch.Tensor, l2: float, max_iter: int = 500) -> torch.Tensor:
    """The weight vector ``w`` (in the features' own scale) minimising the mean Bradley-Terry loss of the
    pairs ``chosen[i] > rejected[i]`` plus ``l2 / 2 * |w_std|^2`` on standardised differences."""
    diff = (chosen.double() - rejected.double())
    scale = diff.std(0).clamp_min(1e-6) if diff.shape[0] > 1 else torch.ones(diff.shape[1], dtype=torch.float64)
    x = diff / scale
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([w], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  history_size=20, line_search_fn="strong_wolfe")  # fmt: skip

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.softplus(-(x @ w)).mean() + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return (w.detach() / scale).float()


def margins(chosen: torch.Tensor, rejected: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``w . (chosen - rejected)`` per pair."""
    return (chosen.float() - rejected.float()) @ w.float()


def choose_l2(
    chosen: torch.Tensor, rejected: torch.Tensor, grid: Sequence[float] = L2_GRID, folds: int = 5, seed: int = 0
) -> float:
    """The penalty of ``grid`` with the lowest cross-validated Bradley-Terry loss on these pairs (``folds``
    folds of pairs; ties go to the stronger penalty)."""
    n = chosen.shape[0]
    folds = max(2, min(folds, n))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = [order[i::folds] for i in range(folds)]
    best: tuple[float, float] | None = None
    for l2 in sorted(grid, reverse=True):
        loss = 0.0
        for i, held in enumerate(parts):
            train = torch.cat([p for j, p in enumerate(parts) if j != i])
            w = fit_linear_head(chosen[train], rejected[train], l2)
            loss += float(F.softplus(-margins(chosen[held], rejected[held], w)).sum())
        if best is None or loss < best[0] - 1e-9:
            best = (loss, l2)
    return best[1]
