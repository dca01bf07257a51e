"""SA (sample adaptive MCMC): the leave-one-out moments and the step's bookkeeping."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plait.infer._sa import cholesky_update, leave_one_out_moments, sa_init, sa_sample


def moments64(points: np.ndarray, dense: bool) -> tuple[np.ndarray, np.ndarray]:
    mean = points.mean(0)
    cov = np.cov(points, rowvar=False, bias=True)
    return mean, (np.linalg.cholesky(cov) if dense else np.sqrt(np.diag(cov)))


@pytest.mark.parametrize("dense", [True, False], ids=["dense", "diagonal"])
def test_leave_one_out_moments_are_those_of_the_points_left(dense: bool) -> None:
    rng = np.random.default_rng(0)
    zs = rng.normal(size=(7, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.7]])
    new = rng.normal(size=3)
    loc, scale = moments64(zs, dense)
    locs, scales = leave_one_out_moments(
        jnp.asarray(zs, jnp.float32),
        jnp.asarray(loc, jnp.float32),
        jnp.asarray(scale, jnp.float32),
        jnp.asarray(new, jnp.float32),
    )
    for n in range(zs.shape[0]):
        kept = np.concatenate([np.delete(zs, n, axis=0), new[None]])
        loc_n, scale_n = moments64(kept, dense)
        np.testing.assert_allclose(locs[n], loc_n, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(scales[n], scale_n, rtol=1e-4, atol=1e-5)


def potential(z: jnp.ndarray) -> jnp.ndarray:
    return 0.5 * jnp.sum((z - jnp.array([1.0, -2.0])) ** 2 / jnp.array([1.0, 4.0]))


@pytest.mark.parametrize("dense", [True, False], ids=["dense", "diagonal"])
def test_a_step_keeps_n_points_with_their_potentials_and_reports_one(dense: bool) -> None:
    state = sa_init(
        jax.random.key(0), jnp.zeros(2), potential, adapt_state_size=5, dense_mass=dense
    )
    step = jax.jit(lambda s: sa_sample(s, potential, num_warmup=3))
    for _ in range(4):
        state = step(state)
    zs, pes, _, scale = state.adapt_state
    assert zs.shape == (5, 2) and int(state.i) == 4
    np.testing.assert_allclose(pes, jax.vmap(potential)(zs), rtol=1e-6)
    assert bool(jnp.any(jnp.all(zs == state.z, axis=1)))
    np.testing.assert_allclose(state.potential_energy, potential(state.z), rtol=1e-6)
    assert 0.0 <= float(state.accept_prob) <= 1.0
    assert scale.shape == ((2, 2) if dense else (2,))


def test_adapt_state_size_below_two_is_an_error() -> None:
    with pytest.raises(AssertionError, match="adapt_state_size should be greater than 1"):
        sa_init(jax.random.key(0), jnp.zeros(2), potential, adapt_state_size=1)


@pytest.mark.parametrize("coef", [0.5, -0.02])
@pytest.mark.parametrize("size", [0.01, 1.0, 3.0])
def test_cholesky_update_is_the_factor_of_the_updated_matrix(size: float, coef: float) -> None:
    # NumPyro 0.22's cholesky_update is off by 0.3 at size 3 (see the docstring).
    rng = np.random.default_rng(1)
    b = rng.normal(size=(4, 4))
    a = b @ b.T + np.eye(4)
    x = size * rng.normal(size=(3, 4))  # a batch of three updates
    out = cholesky_update(
        jnp.asarray(np.linalg.cholesky(a), jnp.float32), jnp.asarray(x, jnp.float32), coef
    )
    for k in range(3):
        expected = np.linalg.cholesky(a + coef * np.outer(x[k], x[k]))
        np.testing.assert_allclose(out[k], expected, rtol=1e-4, atol=1e-5)
