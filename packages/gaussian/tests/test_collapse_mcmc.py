"""``MCMC(NUTS(collapse(model)))`` samples the noise scales only, from their exact posterior.

The reference posterior of ``(s, o)`` is computed on a grid: the dense float64 Gaussian
marginal likelihood (`conftest.dense`) times the HalfNormal priors, normalised.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from scipy import stats

import plait
from plait.control_flow import scan
from plait.gaussian import collapse
from plait.infer import MCMC, NUTS

pytestmark = [
    pytest.mark.slow,
    # The collapsed sites are no latent sites: the init strategy must not see them.
    pytest.mark.filterwarnings("error:.*skipping initialization:UserWarning"),
]


def hmm(y: Any) -> None:
    s = plait.sample("s", dist.HalfNormal(1.0))
    o = plait.sample("o", dist.HalfNormal(1.0))

    def step(x_prev: Any, y_t: Any) -> Any:
        x = plait.sample("x", dist.Normal(x_prev, s))
        plait.sample("y", dist.Normal(x, o), obs=y_t)
        return x, None

    scan(step, plait.sample("x_0", dist.Normal(0.0, 1.0)), y)


def simulate(steps: int, s: float, o: float) -> np.ndarray:
    rng = np.random.default_rng(1)
    x = rng.normal() + np.cumsum(s * rng.normal(size=steps))
    return x + o * rng.normal(size=steps)


def grid_posterior(dense_chain: Any, y: np.ndarray) -> dict[str, tuple[float, float]]:
    steps = len(y)
    one = np.ones((steps, 1, 1))
    zero = np.zeros((steps, 1))
    s_grid = np.linspace(0.02, 1.5, 50)
    o_grid = np.linspace(0.02, 1.5, 50)
    log_post = np.array(
        [
            [
                dense_chain([0.0], [[1.0]], one, zero, s**2 * one, one, zero, o**2 * one,
                            y.reshape(steps, 1)).log_marginal
                + stats.halfnorm.logpdf(s) + stats.halfnorm.logpdf(o)
                for o in o_grid
            ]
            for s in s_grid
        ]
    )  # fmt: skip
    weights = np.exp(log_post - log_post.max())
    weights /= weights.sum()
    out = {}
    for name, grid, marginal in (("s", s_grid, weights.sum(1)), ("o", o_grid, weights.sum(0))):
        mean = float(marginal @ grid)
        out[name] = (mean, float(np.sqrt(marginal @ (grid - mean) ** 2)))
    return out


def test_nuts_on_the_collapsed_model_recovers_the_scale_posterior(dense_chain: Any) -> None:
    y = simulate(40, 0.5, 0.3)
    mcmc = MCMC(NUTS(collapse(hmm)), num_warmup=300, num_samples=800, progress_bar=False)
    mcmc.run(jax.random.key(0), jnp.asarray(y, jnp.float32))
    samples = mcmc.get_samples()
    assert set(samples) == {"s", "o"}
    for name, (mean, sd) in grid_posterior(dense_chain, y).items():
        draws = np.asarray(samples[name])
        assert abs(draws.mean() - mean) < 0.3 * sd, (name, draws.mean(), mean, sd)
        assert abs(draws.std() - sd) < 0.3 * sd, (name, draws.std(), sd)


def test_svi_map_on_the_collapsed_model_is_the_grid_mode(dense_chain: Any) -> None:
    import optax

    from plait.infer import SVI, AutoDelta, Trace_ELBO

    y = simulate(40, 0.5, 0.3)
    guide = AutoDelta(collapse(hmm))
    svi = SVI(collapse(hmm), guide, optax.adam(0.05), Trace_ELBO())
    result = svi.run(jax.random.key(0), 600, jnp.asarray(y, jnp.float32), progress_bar=False)
    found = guide.median(result.params)
    assert set(found) == {"s", "o"}
    # The mode of the log posterior density (constrained space, as AutoDelta's ELBO), on a
    # fine grid of the dense marginal.
    steps = len(y)
    one, zero = np.ones((steps, 1, 1)), np.zeros((steps, 1))
    grid = np.linspace(0.05, 1.2, 70)
    best = max(
        (
            dense_chain([0.0], [[1.0]], one, zero, s**2 * one, one, zero, o**2 * one,
                        y.reshape(steps, 1)).log_marginal
            + stats.halfnorm.logpdf(s) + stats.halfnorm.logpdf(o),
            s,
            o,
        )
        for s in grid
        for o in grid
    )  # fmt: skip
    step = grid[1] - grid[0]
    assert abs(float(found["s"]) - best[1]) < 2 * step, (found, best)
    assert abs(float(found["o"]) - best[2]) < 2 * step, (found, best)
