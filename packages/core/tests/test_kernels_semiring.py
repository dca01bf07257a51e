"""`log_matmul` and `max_matmul` against float64 NumPy.

Tolerances: float32 against float64 at rtol 1e-6 (values of order 1-100).
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import TypeCheckError

from plait.kernels import log_matmul, max_matmul


def raises_shape_error(match: str) -> Any:
    """The kernel's ValueError, or jaxtyping's TypeCheckError when its shape checks run."""
    return pytest.raises((ValueError, TypeCheckError), match=f"{match}|Type-check error")


def np_log_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x = np.asarray(a, np.float64)[..., :, :, None] + np.asarray(b, np.float64)[..., None, :, :]
    m = np.max(x, axis=-2, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out: np.ndarray = np.squeeze(m, -2) + np.log(np.sum(np.exp(x - m), axis=-2))
    return out


def np_max_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x = np.asarray(a, np.float64)[..., :, :, None] + np.asarray(b, np.float64)[..., None, :, :]
    out: np.ndarray = np.max(x, axis=-2)
    return out


@pytest.mark.parametrize("size", [1, 3, 4, 5, 16])  # <= 4: exact broadcast; > 4: matmul
def test_log_matmul_matches_float64(size: int) -> None:
    rng = np.random.default_rng(size)
    a = (3 * rng.normal(size=(2, size, size)) + 50).astype(np.float32)
    b = (3 * rng.normal(size=(2, size, size)) - 80).astype(np.float32)
    np.testing.assert_allclose(jax.jit(log_matmul)(a, b), np_log_matmul(a, b), rtol=1e-6)


def test_log_matmul_gradient_is_normalised_weights() -> None:
    # d/da[i,k] Σ_ij w[i,j] out[i,j] = Σ_j w[i,j] exp(a[i,k] + b[k,j] - out[i,j]).
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 6, 6)).astype(np.float32)
    w = rng.normal(size=(6, 6))
    ga, gb = jax.jit(jax.grad(lambda a, b: jnp.sum(w * log_matmul(a, b)), argnums=(0, 1)))(a, b)
    out = np_log_matmul(a, b)
    weights = np.exp(a.astype(float)[:, :, None] + b[None, :, :] - out[:, None, :])  # (i, k, j)
    np.testing.assert_allclose(ga, np.einsum("ij,ikj->ik", w, weights), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gb, np.einsum("ij,ikj->kj", w, weights), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [3, 6])
def test_log_matmul_minus_infinity_gives_no_nan(size: int) -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(size, size)).astype(np.float32)
    b = rng.normal(size=(size, size)).astype(np.float32)
    a[0, :] = -np.inf  # a dead row: out row 0 is -inf
    b[:, 1] = -np.inf  # a dead column: out column 1 is -inf
    b[2, :] = -np.inf  # a dead intermediate state
    expected = np_log_matmul(a, b)
    out = jax.jit(log_matmul)(a, b)
    np.testing.assert_array_equal(np.isneginf(out), np.isneginf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(np.asarray(out)[finite], expected[finite], rtol=1e-6)

    def finite_sum(a: jax.Array, b: jax.Array) -> jax.Array:
        out = log_matmul(a, b)
        return jnp.sum(jnp.where(jnp.isfinite(out), out, 0.0))

    ga, gb = jax.jit(jax.grad(finite_sum, argnums=(0, 1)))(a, b)
    assert np.all(np.isfinite(ga)) and np.all(np.isfinite(gb))
    assert np.all(ga[0] == 0) and np.all(gb[2] == 0)


def test_log_matmul_keeps_every_row_within_87_nats_of_its_maximum() -> None:
    # Spreads of hundreds of nats: the rescaled matmul keeps each row's largest
    # entries exactly; entries far below their row's maximum may underflow.
    rng = np.random.default_rng(2)
    a = (100 * rng.normal(size=(16, 16))).astype(np.float32)
    b = (100 * rng.normal(size=(16, 16))).astype(np.float32)
    expected = np_log_matmul(a, b)
    out = np.asarray(jax.jit(log_matmul)(a, b), np.float64)
    near = expected >= expected.max(axis=1, keepdims=True) - 80
    np.testing.assert_allclose(out[near], expected[near], rtol=1e-6)
    assert np.all(out[~near] <= expected.max(axis=1, keepdims=True).repeat(16, 1)[~near] - 80)


def test_log_matmul_batch_dimensions_broadcast() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(2, 1, 5, 5)).astype(np.float32)
    b = rng.normal(size=(3, 5, 5)).astype(np.float32)
    out = jax.jit(log_matmul)(a, b)
    assert out.shape == (2, 3, 5, 5)
    np.testing.assert_allclose(out, np_log_matmul(a, b), rtol=1e-6)


def test_max_matmul_matches_float64() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(size=(3, 7, 7)).astype(np.float32)
    b = rng.normal(size=(7, 7)).astype(np.float32)
    a[0, 2, :] = -np.inf
    np.testing.assert_allclose(jax.jit(max_matmul)(a, b), np_max_matmul(a, b), rtol=1e-6)


def test_semiring_products_reject_mismatched_inputs() -> None:
    a = np.zeros((3, 3), np.float32)
    with raises_shape_error("matching k"):
        log_matmul(a, np.zeros((4, 4), np.float32))
    with pytest.raises(TypeError, match="same dtype"):
        max_matmul(a, np.zeros((3, 3), np.float16))
