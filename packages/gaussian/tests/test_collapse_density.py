"""``log_density(collapse(model), ...)`` against the dense float64 Gaussian marginal.

Every model here is a linear-Gaussian state-space model written as a ``scan`` body; its
chain is written out by hand as the matrices of `conftest.dense` (all latents stacked in
one multivariate normal), whose marginal likelihood of the observations is the reference.
The remaining (non-collapsed) sites add their own log densities, computed with SciPy.
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
from plait.infer import log_density

Y = np.array([0.3, -0.4, 0.9, 1.7, 1.1, 0.6])
T = len(Y)


def hmm(y: Any) -> None:
    """The seed's ``gaussian_hmm`` with unknown noise scales."""
    s = plait.sample("s", dist.HalfNormal(1.0))
    o = plait.sample("o", dist.HalfNormal(1.0))

    def transition(x_prev: Any, y_t: Any) -> Any:
        x = plait.sample("x", dist.Normal(x_prev, s))
        y_t = plait.sample("y", dist.Normal(x, o), obs=y_t)
        return x, (x, y_t)

    x0 = plait.sample("x_0", dist.Normal(0.0, 1.0))
    scan(transition, x0, y)


def scalar_reference(
    dense_chain: Any, s: float, o: float, y: Any = Y, observed: Any = None
) -> float:
    steps = len(y)
    one = np.ones((steps, 1, 1))
    ref = dense_chain(
        [0.0], [[1.0]], one, np.zeros((steps, 1)), s**2 * one, one, np.zeros((steps, 1)),
        o**2 * one, np.reshape(y, (steps, 1)), observed,
    )  # fmt: skip
    return ref.log_marginal


def halfnormal(*values: float) -> float:
    return float(sum(stats.halfnorm.logpdf(v) for v in values))


def test_seed_hmm_marginal(dense_chain: Any) -> None:
    value, tr = log_density(collapse(hmm), (jnp.asarray(Y),), {}, {"s": 0.7, "o": 0.4})
    expected = scalar_reference(dense_chain, 0.7, 0.4) + halfnormal(0.7, 0.4)
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)
    latent = [n for n, site in tr.items() if site.type == "sample" and not site.is_observed]
    assert latent == ["s", "o"]


def test_context_manager_matches_wrapper(dense_chain: Any) -> None:
    def marked(y: Any) -> None:
        s = plait.sample("s", dist.HalfNormal(1.0))
        x0 = plait.sample("x_0", dist.Normal(0.0, 1.0), infer={"collapse": True})

        def step(x_prev: Any, y_t: Any) -> Any:
            x = plait.sample("x", dist.Normal(x_prev, s))
            plait.sample("y", dist.Normal(x, 0.4), obs=y_t)
            return x, None

        scan(step, x0, y)

    def run(y: Any) -> None:
        with collapse():
            marked(y)

    value, _ = log_density(run, (jnp.asarray(Y),), {}, {"s": 0.7})
    expected = scalar_reference(dense_chain, 0.7, 0.4) + halfnormal(0.7)
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)


def test_gradient_against_finite_differences(dense_chain: Any) -> None:
    def f(params: dict[str, Any]) -> Any:
        return log_density(collapse(hmm), (jnp.asarray(Y),), {}, params)[0]

    grad = jax.jit(jax.grad(f))({"s": jnp.asarray(0.7), "o": jnp.asarray(0.4)})

    def reference(s: float, o: float) -> float:
        return scalar_reference(dense_chain, s, o) + halfnormal(s, o)

    eps = 1e-6
    ds = (reference(0.7 + eps, 0.4) - reference(0.7 - eps, 0.4)) / (2 * eps)
    do = (reference(0.7, 0.4 + eps) - reference(0.7, 0.4 - eps)) / (2 * eps)
    np.testing.assert_allclose([float(grad["s"]), float(grad["o"])], [ds, do], rtol=1e-4)


def test_under_jit_and_associative(dense_chain: Any) -> None:
    def assoc(y: Any) -> None:
        s = plait.sample("s", dist.HalfNormal(1.0))

        def step(x_prev: Any, y_t: Any) -> Any:
            x = plait.sample("x", dist.Normal(x_prev, s), infer={"contraction": "associative"})
            plait.sample("y", dist.Normal(x, 0.4), obs=y_t)
            return x, None

        scan(step, plait.sample("x_0", dist.Normal(0.0, 1.0)), y)

    value = jax.jit(lambda s: log_density(collapse(assoc), (jnp.asarray(Y),), {}, {"s": s})[0])(0.7)
    expected = scalar_reference(dense_chain, 0.7, 0.4) + halfnormal(0.7)
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)


def test_multivariate_latent(dense_chain: Any) -> None:
    a = np.array([[0.9, 0.2], [-0.1, 0.8]])
    q = np.array([[0.5, 0.0], [0.2, 0.3]])
    h = np.array([[1.0, 0.0], [0.5, -1.0], [0.0, 2.0]])
    rng = np.random.default_rng(0)
    y = rng.normal(size=(5, 3))

    def model(y: Any) -> None:
        o = plait.sample("o", dist.HalfNormal(1.0))
        x0 = plait.sample("x_0", dist.MultivariateNormal(jnp.array([1.0, -1.0]), jnp.eye(2)))

        def step(x_prev: Any, y_t: Any) -> Any:
            x = plait.sample(
                "x", dist.MultivariateNormal(jnp.asarray(a) @ x_prev, scale_tril=jnp.asarray(q))
            )
            plait.sample("y", dist.Normal(jnp.asarray(h) @ x, o).to_event(1), obs=y_t)
            return x, None

        scan(step, x0, y)

    value, _ = log_density(collapse(model), (jnp.asarray(y),), {}, {"o": 0.6})
    steps = len(y)
    ref = dense_chain(
        [1.0, -1.0], np.eye(2), np.broadcast_to(a, (steps, 2, 2)), np.zeros((steps, 2)),
        np.broadcast_to(q @ q.T, (steps, 2, 2)), np.broadcast_to(h, (steps, 3, 2)),
        np.zeros((steps, 3)), np.broadcast_to(0.36 * np.eye(3), (steps, 3, 3)), y,
    )  # fmt: skip
    np.testing.assert_allclose(float(value), ref.log_marginal + halfnormal(0.6), rtol=1e-5)


def test_time_varying_coefficients(dense_chain: Any) -> None:
    phi = np.array([0.5, 0.9, -0.3, 1.1, 0.2, 0.7])
    u = np.array([0.1, -0.2, 0.3, 0.0, 0.5, -0.4])
    g = np.array([1.0, 2.0, 0.5, -1.0, 1.5, 0.8])

    def model(y: Any, phi: Any, u: Any, g: Any) -> None:
        def step(x_prev: Any, inputs: Any) -> Any:
            y_t, phi_t, u_t, g_t = inputs
            x = plait.sample("x", dist.Normal(phi_t * x_prev + jnp.sin(u_t), 0.5 + u_t**2))
            plait.sample("y", dist.Normal(g_t * x + 1.0, 0.3), obs=y_t)
            return x, None

        scan(step, plait.sample("x_0", dist.Normal(0.2, 1.5)), (y, phi, u, g))

    args = tuple(jnp.asarray(a) for a in (Y, phi, u, g))
    value, _ = log_density(collapse(model), args, {}, {})
    steps = T
    ref = dense_chain(
        [0.2], [[2.25]], phi.reshape(steps, 1, 1), np.sin(u).reshape(steps, 1),
        ((0.5 + u**2) ** 2).reshape(steps, 1, 1), g.reshape(steps, 1, 1),
        np.ones((steps, 1)), np.full((steps, 1, 1), 0.09), Y.reshape(steps, 1),
    )  # fmt: skip
    np.testing.assert_allclose(float(value), ref.log_marginal, rtol=1e-5)


@pytest.mark.parametrize("how", ["obs_mask", "mask_handler", "dist_mask"])
def test_missing_observations(dense_chain: Any, how: str) -> None:
    observed = np.array([True, False, True, True, False, True])

    def model(y: Any, observed: Any) -> None:
        def step(x_prev: Any, inputs: Any) -> Any:
            y_t, seen = inputs
            x = plait.sample("x", dist.Normal(x_prev, 0.7))
            if how == "obs_mask":
                plait.sample("y", dist.Normal(x, 0.4), obs=y_t, obs_mask=seen)
            elif how == "mask_handler":
                with plait.handlers.mask(mask=seen):
                    plait.sample("y", dist.Normal(x, 0.4), obs=y_t)
            else:
                plait.sample("y", dist.Normal(x, 0.4).mask(seen), obs=y_t)
            return x, None

        scan(step, plait.sample("x_0", dist.Normal(0.0, 1.0)), (y, observed))

    y = np.where(observed, Y, np.nan if how != "obs_mask" else 0.0)
    value, _ = log_density(collapse(model), (jnp.asarray(y), jnp.asarray(observed)), {}, {})
    expected = scalar_reference(dense_chain, 0.7, 0.4, Y, observed.reshape(T, 1))
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)


def test_sites_of_one_step_that_read_each_other(dense_chain: Any) -> None:
    """A local-linear trend: v_t ~ N(v_{t-1}, q), x_t ~ N(x_{t-1} + v_t, r), two initial sites."""

    def model(y: Any) -> None:
        q = plait.sample("q", dist.HalfNormal(1.0))

        def step(carry: Any, y_t: Any) -> Any:
            x_prev, v_prev = carry
            v = plait.sample("v", dist.Normal(v_prev, q))
            x = plait.sample("x", dist.Normal(x_prev + v, 0.5))
            plait.sample("y", dist.Normal(x, 0.3), obs=y_t)
            return (x, v), None

        x0 = plait.sample("x_0", dist.Normal(1.0, 2.0))
        v0 = plait.sample("v_0", dist.Normal(0.0, 1.0))
        scan(step, (x0, v0), y)

    value, tr = log_density(collapse(model), (jnp.asarray(Y),), {}, {"q": 0.4})
    latent = [n for n, site in tr.items() if site.type == "sample" and not site.is_observed]
    assert latent == ["q"]
    f = np.array([[1.0, 0.0], [1.0, 1.0]])  # state (v, x)
    q = np.array([[0.16, 0.16], [0.16, 0.16 + 0.25]])
    ref = dense_chain(
        [0.0, 1.0], np.diag([1.0, 4.0]), np.broadcast_to(f, (T, 2, 2)), np.zeros((T, 2)),
        np.broadcast_to(q, (T, 2, 2)), np.broadcast_to([[0.0, 1.0]], (T, 1, 2)),
        np.zeros((T, 1)), np.full((T, 1, 1), 0.09), Y.reshape(T, 1),
    )  # fmt: skip
    np.testing.assert_allclose(float(value), ref.log_marginal + halfnormal(0.4), rtol=1e-5)
    grad = jax.grad(lambda p: log_density(collapse(model), (jnp.asarray(Y),), {}, p)[0])
    assert np.isfinite(float(grad({"q": jnp.asarray(0.4)})["q"]))


def test_multivariate_against_dynamax() -> None:
    """A second, independent reference: dynamax's LGSSM filter (a test dependency)."""
    lgssm = pytest.importorskip("dynamax.linear_gaussian_ssm")
    inference = pytest.importorskip("dynamax.linear_gaussian_ssm.inference")
    a = np.array([[0.9, 0.2], [-0.1, 0.8]])
    q = np.array([[0.5, 0.0], [0.2, 0.3]])
    h = np.array([[1.0, 0.0], [0.5, -1.0], [0.0, 2.0]])
    y = np.random.default_rng(2).normal(size=(30, 3))

    def model(y: Any) -> None:
        x0 = plait.sample("x_0", dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)))

        def step(x_prev: Any, y_t: Any) -> Any:
            loc = jnp.asarray(a) @ x_prev
            x = plait.sample("x", dist.MultivariateNormal(loc, scale_tril=jnp.asarray(q)))
            plait.sample("y", dist.Normal(jnp.asarray(h) @ x, 0.6).to_event(1), obs=y_t)
            return x, None

        scan(step, x0, y)

    value, _ = log_density(collapse(model), (jnp.asarray(y),), {}, {})
    # dynamax observes its first state: give it x_1's prior.
    params = inference.make_lgssm_params(
        initial_mean=jnp.zeros(2),
        initial_cov=jnp.asarray(a @ a.T + q @ q.T),
        dynamics_weights=jnp.asarray(a),
        dynamics_cov=jnp.asarray(q @ q.T),
        emissions_weights=jnp.asarray(h),
        emissions_cov=0.36 * jnp.eye(3),
    )
    expected = lgssm.lgssm_filter(params, jnp.asarray(y)).marginal_loglik
    np.testing.assert_allclose(float(value), float(expected), rtol=1e-5)


def test_context_manager_leaves_an_unmarked_initial_site_sampled(dense_chain: Any) -> None:
    """``with collapse():`` cannot look ahead: x_0 stays a latent, the chain starts from it."""

    def run(y: Any) -> None:
        with collapse():
            hmm(y)

    params = {"s": 0.7, "o": 0.4, "x_0": 0.1}
    value, tr = log_density(run, (jnp.asarray(Y),), {}, params)
    latent = [n for n, site in tr.items() if site.type == "sample" and not site.is_observed]
    assert latent == ["s", "o", "x_0"]
    one = np.ones((T, 1, 1))
    ref = dense_chain(
        [0.1], [[0.0]], one, np.zeros((T, 1)), 0.49 * one, one, np.zeros((T, 1)), 0.16 * one,
        Y.reshape(T, 1),
    )  # fmt: skip
    expected = ref.log_marginal + halfnormal(0.7, 0.4) + float(stats.norm.logpdf(0.1))
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)
