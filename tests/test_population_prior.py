"""The population prior over preference weights: learnt from training users' choices, used for new users."""

import numpy as np
import pytest

from pluralign.errors import PreferenceError
from pluralign.preferences.inference import infer_preference
from pluralign.preferences.population_prior import PopulationPrior
from pluralign.preferences.simulated_users import SimulatedUsers, cosine

NAMES = ["a", "b", "c", "d"]


def _population(alpha: float, n: int = 40, pairs: int = 200, seed: int = 0):
    """Users of a Dirichlet(alpha) population choosing on random pairs of z-scored responses."""
    rng = np.random.default_rng(seed)
    users = SimulatedUsers.draw(n, NAMES, alpha=alpha, tau=0.25, seed=seed + 1)
    z = rng.normal(size=(2 * pairs, len(NAMES)))
    a, b = z[:pairs], z[pairs:]
    picks = users.choose(a, b, seed=seed + 2)
    return users, [np.where(picks[u][:, None], a - b, b - a) for u in range(n)]


def test_fit_tells_a_population_of_one_objective_users_from_one_of_mixers():
    grid = {"alphas": (0.05, 0.5, 5.0), "scales": (2.0, 4.0, 8.0), "samples": 4000, "tasks_per_user": 5}
    _, specialists = _population(0.05)
    _, mixers = _population(5.0)
    assert PopulationPrior.fit(specialists, **grid).alpha == 0.05
    assert PopulationPrior.fit(mixers, **grid).alpha == 5.0
    # the choices' sharpness is 1 / tau = 4
    assert PopulationPrior.fit(specialists, **grid).scale == 4.0


def test_the_population_prior_infers_new_users_closer_than_the_uniform_prior():
    users, diffs = _population(0.05, n=50)
    prior = PopulationPrior.fit(diffs[:35], alphas=(0.05, 0.5, 5.0), scales=(4.0,), samples=8000, tasks_per_user=5)
    rng = np.random.default_rng(3)
    with_prior, uniform = [], []
    for u in range(35, 50):  # users the prior never saw
        for _ in range(5):
            ctx = diffs[u][rng.permutation(len(diffs[u]))[:10]]
            with_prior.append(cosine(infer_preference(ctx, NAMES, prior=prior).weights, users.weights[u]))
            uniform.append(cosine(infer_preference(ctx, NAMES).weights, users.weights[u]))
    assert np.mean(with_prior) > np.mean(uniform) + 0.03
    # no choices: the prior's mean, the uniform preference
    assert np.allclose(prior.posterior_mean(np.zeros((0, 4))), 0.25)


def test_a_prior_over_other_objectives_or_bad_settings_is_one_line_error():
    prior = PopulationPrior(0.1, 4.0, k=3, samples=100)
    with pytest.raises(PreferenceError, match="3 objectives, not 4"):
        infer_preference(np.ones((2, 4)), NAMES, prior=prior)
    with pytest.raises(PreferenceError, match="alpha > 0"):
        PopulationPrior(0.0, 4.0, k=4)
    with pytest.raises(PreferenceError, match="at least one user"):
        PopulationPrior.fit([])
