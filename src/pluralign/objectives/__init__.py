"""Reward sources that score (prompt, response) pairs, and sets of K named objectives."""

from pluralign.objectives.base import Objective
from pluralign.objectives.builtin import BUILTINS, BuiltinObjective
from pluralign.objectives.set import SOURCE_TYPES, ObjectiveSet, ObjectiveStats, build_objective, parse_objective_spec

__all__ = [
    "BUILTINS",
    "BuiltinObjective",
    "Objective",
    "ObjectiveSet",
    "ObjectiveStats",
    "SOURCE_TYPES",
    "build_objective",
    "parse_objective_spec",
]
