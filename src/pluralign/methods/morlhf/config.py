"""Options of ``pluralign train morlhf``: RLOO options plus the preference grid to train."""

from __future__ import annotations

from dataclasses import dataclass, field

from pluralign.training.rl import ObjectiveRLConfig


@dataclass
class MORLHFConfig(ObjectiveRLConfig):
    """One RLOO run per preference point; the grid is ``preference_grid(K, grid_points)``."""

    grid_points: int | None = field(
        default=None,
        metadata={
            "help": "grid resolution H (weights are multiples of 1/H): H+1 runs for K=2; default 10 for K=2, 4 for K>=3"
        },
    )
