"""Forward-filter backward-sample (`chain_sample`) against exact posteriors.

The statistical tests use fixed seeds and N = 20 000 draws; each empirical
frequency must lie within 5 binomial standard deviations (plus 1e-3) of the exact
float64 probability from enumerating every path.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plait.kernels import ChainPath, FactoredSteps, Steps, Strategy, chain_sample

STRATEGIES: list[Strategy] = ["sequential", "associative"]
NUM_DRAWS = 20_000


def path_log_probs(init: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """log p(x_0..x_T), one axis per state, in float64 by enumeration."""
    scores = np.asarray(init, np.float64)
    for step in np.asarray(steps, np.float64):
        scores = scores[..., :, None] + step
    finite = scores[np.isfinite(scores)]
    m = finite.max()
    log_p: np.ndarray = scores - (m + np.log(np.sum(np.exp(finite - m))))
    return log_p


def np_log_normalizer(init: np.ndarray, steps: np.ndarray) -> float:
    """log Z by a float64 log-space forward recursion."""
    alpha = np.asarray(init, np.float64)
    with np.errstate(divide="ignore"):
        for step in np.asarray(steps, np.float64):
            x = alpha[:, None] + step
            m = np.max(x, axis=0)
            m = np.where(np.isfinite(m), m, 0.0)
            alpha = m + np.log(np.sum(np.exp(x - m), axis=0))
    m = np.max(alpha)
    return float(m + np.log(np.sum(np.exp(alpha - m))))


@functools.cache
def sampler(strategy: Strategy) -> Any:
    """Jitted draws, vmapped over keys (inputs are arguments, not baked-in constants)."""

    def sample(key: jax.Array, init: jax.Array, steps: Steps) -> ChainPath:
        return chain_sample(key, init, steps, strategy=strategy)

    return jax.jit(jax.vmap(sample, in_axes=(0, None, None)))


def draws(
    strategy: Strategy, init: np.ndarray, steps: np.ndarray, num: int, seed: int = 0
) -> np.ndarray:
    path = sampler(strategy)(jax.random.split(jax.random.key(seed), num), init, steps)
    return np.concatenate([np.asarray(path.initial_state)[:, None], np.asarray(path.states)], 1)


def assert_frequencies(counts: np.ndarray, probs: np.ndarray, num: int) -> None:
    freq = counts / num
    tol = 5 * np.sqrt(probs * (1 - probs) / num) + 1e-3
    bad = np.abs(freq - probs) > tol
    assert not bad.any(), f"frequencies {freq[bad]} vs probabilities {probs[bad]}"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_path_frequencies_match_exact_posterior(strategy: Strategy) -> None:
    rng = np.random.default_rng(0)
    init = rng.normal(size=3).astype(np.float32)
    steps = rng.normal(size=(3, 3, 3)).astype(np.float32)
    steps[1, 0, 2] = -np.inf
    samples = draws(strategy, init, steps, NUM_DRAWS)
    log_p = path_log_probs(init, steps)
    counts = np.zeros(log_p.shape)
    np.add.at(counts, tuple(samples.T), 1)
    assert_frequencies(counts.ravel(), np.exp(log_p).ravel(), NUM_DRAWS)


def test_marginals_of_a_longer_chain_match_exact_posterior() -> None:
    rng = np.random.default_rng(1)
    init = rng.normal(size=4).astype(np.float32)
    steps = (2 * rng.normal(size=(6, 4, 4))).astype(np.float32)
    by_strategy = [draws(strategy, init, steps, NUM_DRAWS, seed=1) for strategy in STRATEGIES]
    # One Gumbel vector per state, shared by both backward passes: the same paths.
    np.testing.assert_array_equal(by_strategy[0], by_strategy[1])
    samples = by_strategy[0]
    p = np.exp(path_log_probs(init, steps))
    axes = tuple(range(7))
    for t in range(7):
        marginal = p.sum(axis=tuple(a for a in axes if a != t))
        assert_frequencies(np.bincount(samples[:, t], minlength=4), marginal, NUM_DRAWS)
    for t in range(6):  # consecutive pairs: the transitions drawn
        pair = p.sum(axis=tuple(a for a in axes if a not in (t, t + 1)))
        counts = np.zeros((4, 4))
        np.add.at(counts, (samples[:, t], samples[:, t + 1]), 1)
        assert_frequencies(counts.ravel(), pair.ravel(), NUM_DRAWS)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_batched_factored_chain_never_draws_an_impossible_transition(strategy: Strategy) -> None:
    # Left-to-right chains (stay or move up one state) with sharp emissions, a
    # batch of two, as FactoredSteps.
    rng = np.random.default_rng(3)
    num_states, num_steps = 5, 12
    trans = np.full((1, num_states, num_states), -np.inf, np.float32)
    for i in range(num_states):
        trans[0, i, i] = 0.0
        trans[0, i, min(i + 1, num_states - 1)] = -1.0
    emission = (10 * rng.normal(size=(2, num_steps, num_states))).astype(np.float32)
    init = np.array([0.0] + [-np.inf] * (num_states - 1), np.float32)
    steps = FactoredSteps(trans, emission)
    path = sampler(strategy)(jax.random.split(jax.random.key(3), 200), init, steps)
    assert path.states.shape == (200, 2, num_steps) and path.states.dtype == jnp.int32
    assert path.initial_state.shape == (200, 2) and path.initial_state.dtype == jnp.int32
    samples = np.concatenate([np.asarray(path.initial_state)[..., None], path.states], -1)
    assert np.all(samples[..., 0] == 0)
    moves = np.diff(samples, axis=-1)
    assert np.all((moves == 0) | (moves == 1))
    expected = [np_log_normalizer(init, trans + e[:, None, :]) for e in emission]
    np.testing.assert_allclose(path.log_normalizer[0], expected, rtol=1e-6)


@pytest.mark.parametrize("num_steps", [0, 1])
def test_short_chains(num_steps: int) -> None:
    init = np.log(np.array([0.2, 0.8], np.float32))
    steps = np.log(np.full((num_steps, 2, 2), 0.5, np.float32))
    samples = draws("sequential", init, steps, NUM_DRAWS, seed=4)
    assert samples.shape == (NUM_DRAWS, num_steps + 1)
    assert_frequencies(np.bincount(samples[:, 0], minlength=2), np.array([0.2, 0.8]), NUM_DRAWS)
    for t in range(1, num_steps + 1):
        assert_frequencies(np.bincount(samples[:, t], minlength=2), np.array([0.5, 0.5]), NUM_DRAWS)


def test_tree_is_refused() -> None:
    with pytest.raises(ValueError, match='"tree" computes the total only'):
        chain_sample(
            jax.random.key(0),
            np.zeros(2, np.float32),
            np.zeros((3, 2, 2), np.float32),
            strategy="tree",
        )
