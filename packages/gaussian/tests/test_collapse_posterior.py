"""The latents back: `smooth`'s moments and ``Predictive(collapse(model))``'s FFBS draws,
against the dense float64 conditional of every latent given the observations."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import plait
from plait.control_flow import scan
from plait.gaussian import collapse, smooth
from plait.infer import Predictive

Y = np.array([0.3, -0.4, 0.9, 1.7, 1.1])
T = len(Y)


def hmm(y: Any) -> Any:
    s = plait.sample("s", dist.HalfNormal(1.0))

    def step(x_prev: Any, y_t: Any) -> Any:
        x = plait.sample("x", dist.Normal(0.9 * x_prev + 0.1, s))
        plait.sample("y", dist.Normal(2.0 * x, 0.5), obs=y_t)
        return x, x

    x0 = plait.sample("x_0", dist.Normal(0.5, 1.2))
    return scan(step, x0, y)


def reference(dense_chain: Any, s: float) -> Any:
    one = np.ones((T, 1, 1))
    return dense_chain(
        [0.5], [[1.44]], 0.9 * one, np.full((T, 1), 0.1), s**2 * one, 2.0 * one,
        np.zeros((T, 1)), 0.25 * one, Y.reshape(T, 1),
    )  # fmt: skip


def test_smooth_matches_dense_conditional(dense_chain: Any) -> None:
    post = smooth(hmm, (jnp.asarray(Y),), params={"s": jnp.asarray(0.6)})
    ref = reference(dense_chain, 0.6)
    variances = np.diag(ref.cov)
    np.testing.assert_allclose(post["x_0"].mean, ref.mean[0, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(post["x_0"].covariance, variances[0], rtol=1e-5)
    np.testing.assert_allclose(post["x"].mean, ref.mean[1:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(post["x"].covariance, variances[1:], rtol=1e-5)


def test_smooth_under_vmap_over_posterior_samples(dense_chain: Any) -> None:
    scales = jnp.array([0.3, 0.6, 1.1])

    def one(s: Any) -> Any:
        return smooth(hmm, (jnp.asarray(Y),), params={"s": s})["x"].mean

    means = jax.jit(jax.vmap(one))(scales)
    for row, s in zip(means, scales, strict=True):
        np.testing.assert_allclose(row, reference(dense_chain, float(s)).mean[1:, 0], rtol=1e-4)


def test_predictive_draws_from_the_dense_conditional(dense_chain: Any) -> None:
    draws = 4000
    samples = {"s": jnp.full((draws,), 0.6)}
    out = Predictive(collapse(hmm), samples)(jax.random.key(0), jnp.asarray(Y))
    paths = np.concatenate([np.asarray(out["x_0"])[:, None], np.asarray(out["x"])], axis=1)
    assert paths.shape == (draws, T + 1) and np.isfinite(paths).all()
    ref = reference(dense_chain, 0.6)
    sd = np.sqrt(np.diag(ref.cov))
    # Means within 5 standard errors; covariances within a loose band.
    np.testing.assert_array_less(np.abs(paths.mean(0) - ref.mean[:, 0]), 5 * sd / np.sqrt(draws))
    np.testing.assert_allclose(np.cov(paths.T), ref.cov, atol=0.1 * sd.max() ** 2)
    # The observations are the data, not draws.
    np.testing.assert_allclose(np.asarray(out["y"])[0], Y, rtol=1e-6)


A = np.array([[0.9, 0.2], [-0.1, 0.8]])
Q = np.array([[0.5, 0.0], [0.2, 0.3]])
H = np.array([[1.0, 0.0], [0.5, -1.0], [0.0, 2.0]])
Y3 = np.random.default_rng(0).normal(size=(4, 3))


def mvn(y: Any) -> None:
    x0 = plait.sample("x_0", dist.MultivariateNormal(jnp.array([1.0, -1.0]), jnp.eye(2)))

    def step(x_prev: Any, y_t: Any) -> Any:
        loc = jnp.asarray(A) @ x_prev
        x = plait.sample("x", dist.MultivariateNormal(loc, scale_tril=jnp.asarray(Q)))
        plait.sample("y", dist.Normal(jnp.asarray(H) @ x, 0.6).to_event(1), obs=y_t)
        return x, None

    scan(step, x0, y)


def test_multivariate_smooth_and_draws(dense_chain: Any) -> None:
    steps = len(Y3)
    ref = dense_chain(
        [1.0, -1.0], np.eye(2), np.broadcast_to(A, (steps, 2, 2)), np.zeros((steps, 2)),
        np.broadcast_to(Q @ Q.T, (steps, 2, 2)), np.broadcast_to(H, (steps, 3, 2)),
        np.zeros((steps, 3)), np.broadcast_to(0.36 * np.eye(3), (steps, 3, 3)), Y3,
    )  # fmt: skip
    blocks = np.stack([ref.cov[2 * t : 2 * t + 2, 2 * t : 2 * t + 2] for t in range(steps + 1)])
    post = smooth(mvn, (jnp.asarray(Y3),))
    np.testing.assert_allclose(post["x_0"].mean, ref.mean[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(post["x_0"].covariance, blocks[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(post["x"].mean, ref.mean[1:], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(post["x"].covariance, blocks[1:], rtol=1e-4, atol=1e-6)

    draws = 4000
    out = Predictive(collapse(mvn), num_samples=draws)(jax.random.key(1), jnp.asarray(Y3))
    paths = np.concatenate([np.asarray(out["x_0"])[:, None], np.asarray(out["x"])], axis=1)
    assert paths.shape == (draws, steps + 1, 2)
    flat = paths.reshape(draws, -1)
    sd = np.sqrt(np.diag(ref.cov))
    np.testing.assert_array_less(
        np.abs(flat.mean(0) - ref.mean.reshape(-1)), 5 * sd / np.sqrt(draws)
    )
    np.testing.assert_allclose(np.cov(flat.T), ref.cov, atol=0.1 * sd.max() ** 2)


SEEN = np.array([True, False, True, True, False])


@pytest.mark.parametrize("how", ["obs_mask", "mask_handler", "dist_mask"])
def test_predictive_draws_with_missing_observations(dense_chain: Any, how: str) -> None:
    """FFBS with steps 1 and 4 unobserved: the dense conditional given the observed steps."""

    def masked(y: Any, seen: Any) -> Any:
        def step(x_prev: Any, inputs: Any) -> Any:
            y_t, seen_t = inputs
            x = plait.sample("x", dist.Normal(0.9 * x_prev + 0.1, 0.6))
            if how == "obs_mask":
                plait.sample("y", dist.Normal(2.0 * x, 0.5), obs=y_t, obs_mask=seen_t)
            elif how == "mask_handler":
                with plait.handlers.mask(mask=seen_t):
                    plait.sample("y", dist.Normal(2.0 * x, 0.5), obs=y_t)
            else:
                plait.sample("y", dist.Normal(2.0 * x, 0.5).mask(seen_t), obs=y_t)
            return x, None

        scan(step, plait.sample("x_0", dist.Normal(0.5, 1.2)), (y, seen))

    draws = 4000
    y = np.where(SEEN, Y, 0.0 if how == "obs_mask" else np.nan)
    out = Predictive(collapse(masked), num_samples=draws)(
        jax.random.key(2), jnp.asarray(y), jnp.asarray(SEEN)
    )
    paths = np.concatenate([np.asarray(out["x_0"])[:, None], np.asarray(out["x"])], axis=1)
    assert paths.shape == (draws, T + 1) and np.isfinite(paths).all()
    one = np.ones((T, 1, 1))
    ref = dense_chain(
        [0.5], [[1.44]], 0.9 * one, np.full((T, 1), 0.1), 0.36 * one, 2.0 * one,
        np.zeros((T, 1)), 0.25 * one, Y.reshape(T, 1), SEEN.reshape(T, 1),
    )  # fmt: skip
    sd = np.sqrt(np.diag(ref.cov))
    # The unobserved steps are wider than the observed ones: the mask reached the filter.
    assert sd[2] > 2 * sd[1] and sd[5] > 2 * sd[4]
    np.testing.assert_array_less(np.abs(paths.mean(0) - ref.mean[:, 0]), 5 * sd / np.sqrt(draws))
    np.testing.assert_allclose(np.cov(paths.T), ref.cov, atol=0.1 * sd.max() ** 2)
    np.testing.assert_allclose(np.asarray(out["y"])[:, SEEN], np.broadcast_to(Y[SEEN], (draws, 3)))
    if how == "obs_mask":
        # As in NumPyro, the missing values are drawn too, given the path: y_t ~ N(2 x_t, 0.5).
        missing = np.asarray(out["y"])[:, ~SEEN]
        x_missing = paths[:, 1:][:, ~SEEN]
        np.testing.assert_allclose(missing.mean(0), 2.0 * ref.mean[1:, 0][~SEEN], atol=0.1)
        np.testing.assert_allclose(np.std(missing - 2.0 * x_missing, axis=0), 0.5, rtol=0.05)
