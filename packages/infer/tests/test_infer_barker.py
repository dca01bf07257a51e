"""BarkerMH: the proposal's scale and acceptance against NumPyro's formulas."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from blackjax.mcmc.barker import init as barker_init

from plait.infer._barker import barker_kernel

DIAGONAL = jnp.array([4.0, 0.25, 1.0])
DENSE = jnp.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]])


def quartic(x: Any) -> Any:
    """A non-Gaussian log density (so that the gradient changes along a move)."""
    return -jnp.sum(0.25 * x**4 + 0.5 * x**2 + 0.3 * x)


def factor(imm: Any) -> np.ndarray:
    """NumPyro's square root of the inverse mass matrix in float64: the upper triangular
    ``U`` with ``imm = U Uᵀ`` (``mass_matrix_sqrt_inv`` is its transpose)."""
    imm = np.asarray(imm, np.float64)
    if imm.ndim == 1:
        return np.diag(np.sqrt(imm))
    return np.linalg.cholesky(imm[::-1, ::-1])[::-1, ::-1]


@pytest.mark.parametrize("imm", [DIAGONAL, DENSE], ids=["diagonal", "dense"])
def test_proposal_covariance_is_step_size_squared_times_the_inverse_mass_matrix(imm: Any) -> None:
    # At the mode the gradient is zero: b = ±1 with probability 1/2, so y - x = L b z is
    # exactly N(0, σ² Σ). (BlackJAX alone would give σ² Σ⁻¹ here.)
    logdensity = lambda x: -0.5 * jnp.sum(x**2)  # noqa: E731
    state = barker_init(jnp.zeros(3), logdensity)
    keys = jax.random.split(jax.random.key(0), 40_000)
    step = jax.jit(jax.vmap(lambda k: barker_kernel(k, state, logdensity, 0.5, imm)[1]))
    moves = np.asarray(step(keys).proposal.position, np.float64)
    expected = 0.25 * (np.diag(np.asarray(imm)) if imm.ndim == 1 else np.asarray(imm))
    # Standard error of a covariance entry: sqrt((S_ii S_jj + S_ij^2) / n).
    se = np.sqrt((np.outer(np.diag(expected), np.diag(expected)) + expected**2) / keys.shape[0])
    assert np.all(np.abs(np.cov(moves, rowvar=False) - expected) < 5 * se)


@pytest.mark.parametrize("imm", [DIAGONAL, DENSE], ids=["diagonal", "dense"])
def test_acceptance_probability_is_numpyros_formula(imm: Any) -> None:
    x = jnp.array([0.7, -1.2, 0.4])
    state = barker_init(x, quartic)
    keys = jax.random.split(jax.random.key(1), 50)
    step = jax.jit(jax.vmap(lambda k: barker_kernel(k, state, quartic, 0.8, imm)))
    new, info = step(keys)

    # NumPyro's BarkerMH.sample in float64: w = U⁻¹ (y - x), c = Uᵀ ∇pe (potential pe),
    # with pe = sum(x⁴/4 + x²/2 + 0.3 x) and ∇pe = x³ + x + 0.3 written out.
    def pe(v: np.ndarray) -> np.ndarray:
        return np.sum(0.25 * v**4 + 0.5 * v**2 + 0.3 * v, axis=-1)

    def grad_pe(v: np.ndarray) -> np.ndarray:
        return v**3 + v + 0.3

    upper = factor(imm)
    x64 = np.asarray(x, np.float64)
    y64 = np.asarray(info.proposal.position, np.float64)
    w = np.linalg.solve(upper, (y64 - x64).T).T
    cx, cy = grad_pe(x64) @ upper, grad_pe(y64) @ upper  # rows of Uᵀ ∇pe
    log_ratio = pe(x64) - pe(y64) + np.sum(np.logaddexp(0, w * cx) - np.logaddexp(0, -w * cy), -1)
    expected = np.minimum(1.0, np.exp(log_ratio))
    np.testing.assert_allclose(info.acceptance_rate, expected, rtol=2e-4, atol=1e-6)
    accepted = np.asarray(info.is_accepted)
    np.testing.assert_array_equal(
        np.asarray(new.position)[accepted], np.asarray(info.proposal.position)[accepted]
    )
    assert np.all(np.asarray(new.position)[~accepted] == np.asarray(x))
