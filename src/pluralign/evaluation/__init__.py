"""Evaluation: Pareto fronts over a preference grid, hypervolume, steerability, plots and reports."""

from pluralign.evaluation.front import (
    Front,
    constant_front,
    evaluate_front,
    finalise,
    output_stats,
    read_front_json,
    write_front_json,
)
from pluralign.evaluation.metrics import DEFAULT_REFERENCE_Z, hypervolume, steerability
from pluralign.evaluation.plot import plot_fronts
from pluralign.evaluation.report import write_report

__all__ = [
    "DEFAULT_REFERENCE_Z",
    "Front",
    "constant_front",
    "evaluate_front",
    "finalise",
    "hypervolume",
    "output_stats",
    "plot_fronts",
    "read_front_json",
    "steerability",
    "write_front_json",
    "write_report",
]
