"""Viterbi (`chain_mode`) against brute-force argmax and a float64 NumPy Viterbi.

Random continuous step matrices make the best path unique. Scores are compared at
rtol 1e-6 (float32 against float64).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plait.kernels import FactoredSteps, chain_max, chain_mode

STRATEGIES = ["sequential", "associative"]

mode = jax.jit(
    lambda init, steps, strategy: chain_mode(init, steps, strategy=strategy), static_argnums=2
)


def brute_best_path(init: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, float]:
    scores = np.asarray(init, np.float64)
    for step in np.asarray(steps, np.float64):
        scores = scores[..., :, None] + step
    best = np.unravel_index(np.argmax(scores), scores.shape)
    return np.array(best), float(scores[best])


def viterbi64(init: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, float]:
    """Textbook Viterbi with back-pointers, float64."""
    delta = np.asarray(init, np.float64)
    pointers = []
    for step in np.asarray(steps, np.float64):
        x = delta[:, None] + step
        pointers.append(np.argmax(x, axis=0))
        delta = np.max(x, axis=0)
    path = [int(np.argmax(delta))]
    for back in reversed(pointers):
        path.append(int(back[path[-1]]))
    return np.array(path[::-1]), float(np.max(delta))


def path_score(init: np.ndarray, steps: np.ndarray, path: np.ndarray) -> float:
    t = np.arange(steps.shape[0])
    return float(init[path[0]] + np.sum(steps[t, path[:-1], path[1:]].astype(np.float64)))


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(("num_states", "num_steps"), [(2, 1), (3, 5), (4, 6)])
def test_best_path_matches_brute_force(strategy: str, num_states: int, num_steps: int) -> None:
    rng = np.random.default_rng(num_states * 7 + num_steps)
    init = rng.normal(size=(3, num_states)).astype(np.float32)  # a batch of three chains
    steps = rng.normal(size=(3, num_steps, num_states, num_states)).astype(np.float32)
    result = mode(init, steps, strategy)
    assert result.states.shape == (3, num_steps) and result.states.dtype == jnp.int32
    for b in range(3):
        best, score = brute_best_path(init[b], steps[b])
        np.testing.assert_array_equal(result.initial_state[b], best[0])
        np.testing.assert_array_equal(result.states[b], best[1:])
        np.testing.assert_allclose(result.log_normalizer[b], score, rtol=1e-6)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_long_chain_matches_float64_viterbi(strategy: str) -> None:
    rng = np.random.default_rng(5)
    init = rng.normal(size=4).astype(np.float32)
    steps = (3 * rng.normal(size=(2_000, 4, 4))).astype(np.float32)
    result = mode(init, steps, strategy)
    path = np.concatenate([[int(result.initial_state)], np.asarray(result.states)])
    expected_path, expected_score = viterbi64(init, steps)
    np.testing.assert_array_equal(path, expected_path)
    np.testing.assert_allclose(path_score(init, steps, path), expected_score, rtol=1e-6)
    np.testing.assert_allclose(result.log_normalizer, expected_score, rtol=1e-6)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_forbidden_transitions_and_factored_steps(strategy: str) -> None:
    rng = np.random.default_rng(6)
    trans = np.log(rng.dirichlet(np.ones(4), size=4)).astype(np.float32)
    trans[0, 1:] = -np.inf  # state 0 is absorbing
    trans[:, 3] = -np.inf  # state 3 is never entered
    emission = (4 * rng.normal(size=(9, 4))).astype(np.float32)
    init = np.array([-1.0, 0.0, 0.5, -np.inf], np.float32)
    dense = trans[None] + emission[:, None, :]
    factored = mode(init, FactoredSteps(trans[None], emission), strategy)
    best, score = brute_best_path(init, dense)
    np.testing.assert_array_equal(factored.initial_state, best[0])
    np.testing.assert_array_equal(factored.states, best[1:])
    np.testing.assert_allclose(factored.log_normalizer, score, rtol=1e-6)
    total = jax.jit(chain_max, static_argnames="strategy")(init, dense, strategy=strategy)
    np.testing.assert_allclose(total.log_normalizer, score, rtol=1e-6)


def test_zero_steps_gives_the_best_initial_state() -> None:
    result = chain_mode(np.array([0.0, 2.0, 1.0], np.float32), np.zeros((0, 3, 3), np.float32))
    assert int(result.initial_state) == 1
    assert result.states.shape == (0,)
    np.testing.assert_allclose(result.log_normalizer, 2.0)
