"""Evaluation: Pareto fronts over a preference grid, hypervolume, steerability, plots and reports."""
