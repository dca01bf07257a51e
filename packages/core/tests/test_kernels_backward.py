"""shared_backward against float64 brute force over every path and a float64 recursion."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plait.kernels import shared_backward


def brute_force(transition: np.ndarray, emission: np.ndarray) -> np.ndarray:
    steps, states = emission.shape
    out = np.full(states, -np.inf)
    for first in range(states):
        terms = []
        for path in itertools.product(range(states), repeat=steps):
            prev, total = first, 0.0
            for t, state in enumerate(path):
                total += transition[prev, state] + emission[t, state]
                prev = state
            terms.append(total)
        out[first] = np.logaddexp.reduce(terms)
    return out


def recursion(transition: np.ndarray, emission: np.ndarray) -> np.ndarray:
    beta = np.zeros(transition.shape[0])
    for t in range(emission.shape[0] - 1, -1, -1):
        beta = np.logaddexp.reduce(transition + (emission[t] + beta)[None, :], axis=1)
    return beta


@pytest.mark.parametrize(("states", "steps"), [(2, 1), (3, 4), (2, 5)])
def test_matches_brute_force(states: int, steps: int) -> None:
    rng = np.random.default_rng(states * 10 + steps)
    transition = rng.normal(size=(states, states)) * 2
    emission = rng.normal(size=(steps, states)) * 3
    ours = shared_backward(jnp.asarray(transition, jnp.float32), jnp.asarray(emission, jnp.float32))
    np.testing.assert_allclose(ours, brute_force(transition, emission), rtol=1e-5)


@pytest.mark.parametrize("states", [3, 12])
def test_long_chain_float32_matches_float64_recursion_with_gradient(states: int) -> None:
    rng = np.random.default_rng(states)
    transition = np.log(rng.dirichlet(np.ones(states), size=states))
    emission = rng.normal(size=(2000, states)) * 2
    ours = shared_backward(jnp.asarray(transition, jnp.float32), jnp.asarray(emission, jnp.float32))
    ref = recursion(transition, emission)
    np.testing.assert_allclose(ours, ref, rtol=1e-5)
    grad = jax.grad(lambda e: shared_backward(jnp.asarray(transition, jnp.float32), e)[0])(
        jnp.asarray(emission, jnp.float32)
    )
    eps = 1e-4
    bumped = emission.copy()
    bumped[100, 1] += eps
    fd = (recursion(transition, bumped)[0] - ref[0]) / eps
    np.testing.assert_allclose(grad[100, 1], fd, rtol=1e-3, atol=1e-5)


def test_impossible_transitions_and_batches() -> None:
    transition = jnp.log(jnp.array([[1.0, 0.0], [0.5, 0.5]]))
    emission = jnp.zeros((3, 4, 2))  # batch of 3 chains of 4 steps
    out = shared_backward(transition, emission)
    assert out.shape == (3, 2)
    np.testing.assert_allclose(out, 0.0, atol=1e-6)
