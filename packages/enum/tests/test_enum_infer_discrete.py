"""``infer_discrete``: MAP against float64 Viterbi, draws against exact marginals.

Draws are checked statistically: with ``n`` draws the frequency of an event of
probability ``p`` is within ``5 sqrt(p (1 - p) / n) + 3 / n`` of ``p`` (a 5-sigma band, with
three counts of slack for the rare events where the normal approximation is poor).
"""

from __future__ import annotations

import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from plait import plate, sample
from plait.control_flow import scan
from plait.enum import config_enumerate, infer_discrete, markov
from plait.errors import HandlerError
from plait.handlers import mask, seed, trace

K = 3
TRANS = np.array([[0.8, 0.15, 0.05], [0.1, 0.7, 0.2], [0.25, 0.25, 0.5]])
MEANS = np.array([-2.0, 0.0, 2.0])


def normal_lp(loc: Any, y: Any) -> Any:
    return -0.5 * (np.asarray(y) - loc) ** 2 - 0.5 * np.log(2 * np.pi)


def within(freq: np.ndarray, p: np.ndarray, n: int) -> None:
    band = 5 * np.sqrt(p * (1 - p) / n) + 3 / n
    assert np.all(np.abs(freq - p) <= band), np.max(np.abs(freq - p) - band)


# -- a hidden Markov model as a scan ---------------------------------------------------
def hmm(data: Any) -> Any:
    trans = jnp.asarray(TRANS, jnp.float32)
    means = jnp.asarray(MEANS, jnp.float32)

    def step(x: Any, y: Any) -> Any:
        x = sample("x", dist.Categorical(trans[x]))
        sample("y", dist.Normal(means[x], 1.0), obs=y)
        return x, x

    return scan(step, 0, data)[1]


def viterbi(data: np.ndarray) -> np.ndarray:
    log_t = np.log(TRANS)
    emit = normal_lp(MEANS[None, :], data[:, None])
    score = log_t[0] + emit[0]
    back = []
    for t in range(1, len(data)):
        s = score[:, None] + log_t
        back.append(s.argmax(0))
        score = s.max(0) + emit[t]
    path = [int(score.argmax())]
    for b in reversed(back):
        path.append(int(b[path[-1]]))
    return np.array(path[::-1])


def smoothing(data: np.ndarray) -> np.ndarray:
    """Exact p(x_t | y) by the forward-backward algorithm, float64."""
    log_t = np.log(TRANS)
    emit = normal_lp(MEANS[None, :], data[:, None])
    T = len(data)
    alpha = np.zeros((T, K))
    beta = np.zeros((T, K))
    alpha[0] = log_t[0] + emit[0]
    for t in range(1, T):
        alpha[t] = np.logaddexp.reduce(alpha[t - 1][:, None] + log_t, 0) + emit[t]
    for t in range(T - 2, -1, -1):
        beta[t] = np.logaddexp.reduce(log_t + emit[t + 1] + beta[t + 1], 1)
    post = alpha + beta
    return np.exp(post - np.logaddexp.reduce(post, 1, keepdims=True))


def hmm_data(T: int) -> np.ndarray:
    rng = np.random.default_rng(T)
    x, ys = 0, []
    for _ in range(T):
        x = rng.choice(K, p=TRANS[x])
        ys.append(rng.normal(MEANS[x], 1.0))
    return np.array(ys)


@pytest.mark.parametrize("T", [1, 2, 3, 10, 1000])
def test_map_of_scan_hmm_is_the_viterbi_path(T: int) -> None:
    data = hmm_data(T)
    decode = jax.jit(lambda d: infer_discrete(config_enumerate(hmm), temperature=0)(d))
    np.testing.assert_array_equal(decode(jnp.asarray(data, jnp.float32)), viterbi(data))


@pytest.mark.parametrize("T", [3, 1000])
def test_draws_of_scan_hmm_have_the_smoothing_marginals(T: int) -> None:
    data = hmm_data(T)
    n = 400 if T > 100 else 2000

    @jax.jit
    def draws(keys: Any) -> Any:
        model = config_enumerate(hmm)
        return jax.vmap(lambda k: infer_discrete(model, rng_key=k)(jnp.asarray(data, jnp.float32)))(
            keys
        )

    paths = np.asarray(draws(jax.random.split(jax.random.key(0), n)))
    freq = np.stack([(paths == k).mean(0) for k in range(K)], -1)
    within(freq, smoothing(data), n)
    if T == 3:  # the joint of all three states, against every path's posterior
        log_t = np.log(TRANS)
        emit = normal_lp(MEANS[None, :], data[:, None])
        scores = {
            path: log_t[0, path[0]]
            + sum(log_t[path[t - 1], path[t]] for t in range(1, 3))
            + sum(emit[t, path[t]] for t in range(3))
            for path in itertools.product(range(K), repeat=3)
        }
        norm = np.logaddexp.reduce(list(scores.values()))
        for path, score in scores.items():
            p = np.exp(score - norm)
            within(np.array([np.mean(np.all(paths == path, axis=1))]), np.array([p]), n)


def test_draws_use_the_enclosing_seed_and_return_the_model() -> None:
    data = jnp.asarray(hmm_data(5), jnp.float32)
    model = infer_discrete(config_enumerate(hmm))
    x = jax.jit(lambda d: trace(seed(model, rng_seed=0)).get_trace(d)["x"].value)(data)
    assert x.shape == (5,)
    assert x.dtype == jnp.int32
    with pytest.raises(HandlerError, match="rng_key"):
        model(data)


def test_bad_temperature() -> None:
    with pytest.raises(HandlerError, match="temperature"):
        infer_discrete(config_enumerate(hmm), temperature=2, rng_key=jax.random.key(0))(  # type: ignore[arg-type]
            jnp.zeros(3)
        )


# -- sequences of unequal length in a plate, history 2 ---------------------------------
def masked_hmm(data: Any, lengths: Any) -> Any:
    trans = jnp.asarray(TRANS, jnp.float32)
    means = jnp.asarray(MEANS, jnp.float32)

    def step(carry: Any, y: Any) -> Any:
        x_prev, t = carry
        with plate("sequences", data.shape[1], dim=-1), mask(mask=t < lengths):
            x = sample("x", dist.Categorical(trans[x_prev]))
            sample("y", dist.Normal(means[x], 1.0), obs=y)
        return (x, t + 1), x

    init = jnp.zeros(data.shape[1], jnp.int32)
    return scan(step, (init, 0), data)[1]


def test_map_with_plates_and_masks_is_viterbi_per_sequence() -> None:
    lengths = np.array([9, 4, 1])
    data = np.stack([hmm_data(9) + k for k in range(3)], -1)
    decode = jax.jit(
        lambda d: infer_discrete(config_enumerate(masked_hmm), temperature=0)(
            d, jnp.asarray(lengths)
        )
    )
    paths = np.asarray(decode(jnp.asarray(data, jnp.float32)))
    for k, n in enumerate(lengths):
        np.testing.assert_array_equal(paths[:n, k], viterbi(data[:n, k]))


def history2(data: Any) -> Any:
    probs = jnp.asarray(np.random.default_rng(2).dirichlet(np.ones(2), size=(2, 2)), jnp.float32)

    def step(carry: Any, y: Any) -> Any:
        x = sample("x", dist.Categorical(probs[carry]))
        sample("y", dist.Normal(2.0 * x, 1.0), obs=y)
        return (x, carry[0]), x

    return scan(step, (0, 0), data, history=2)[1]


@pytest.mark.parametrize("T", [2, 5, 6])
def test_map_with_history_two_is_the_best_path(T: int) -> None:
    data = np.random.default_rng(T).normal(size=T) * 2
    probs = np.random.default_rng(2).dirichlet(np.ones(2), size=(2, 2))
    best, best_path = -np.inf, None
    for path in itertools.product((0, 1), repeat=T):
        lp, c = 0.0, (0, 0)
        for t, x in enumerate(path):
            lp += np.log(probs[(*c, x)]) + normal_lp(2.0 * x, data[t])
            c = (x, c[0])
        if lp > best:
            best, best_path = lp, path
    decode = jax.jit(lambda d: infer_discrete(config_enumerate(history2), temperature=0)(d))
    np.testing.assert_array_equal(decode(jnp.asarray(data, jnp.float32)), best_path)


# -- models without scan ---------------------------------------------------------------
WEIGHTS = np.array([0.2, 0.5, 0.3])


def mixture(data: Any) -> Any:
    with plate("data", len(data)):
        z = sample("z", dist.Categorical(jnp.asarray(WEIGHTS, jnp.float32)))
        sample("y", dist.Normal(jnp.asarray(MEANS, jnp.float32)[z], 1.0), obs=data)
    return z


def test_map_and_draws_of_a_mixture() -> None:
    data = np.array([-2.5, -0.2, 0.9, 1.7, 3.0])
    post = np.log(WEIGHTS)[:, None] + normal_lp(MEANS[:, None], data)
    post = np.exp(post - np.logaddexp.reduce(post, 0)).T
    x = jnp.asarray(data, jnp.float32)
    np.testing.assert_array_equal(
        infer_discrete(config_enumerate(mixture), temperature=0)(x), post.argmax(1)
    )
    n = 2000
    draws = jax.jit(jax.vmap(lambda k: infer_discrete(config_enumerate(mixture), rng_key=k)(x)))(
        jax.random.split(jax.random.key(1), n)
    )
    freq = np.stack([(np.asarray(draws) == k).mean(0) for k in range(K)], -1)
    within(freq, post, n)


def markov_chain(data: Any) -> list[Any]:
    trans = jnp.asarray(TRANS, jnp.float32)
    x, xs = 0, []
    for t in markov(range(len(data))):
        x = sample(f"x_{t}", dist.Categorical(trans[x]))
        sample(f"y_{t}", dist.Normal(jnp.asarray(MEANS, jnp.float32)[x], 1.0), obs=data[t])
        xs.append(x)
    return xs


def test_map_of_a_markov_loop_is_the_viterbi_path() -> None:
    data = hmm_data(8)
    decode = infer_discrete(config_enumerate(markov_chain), temperature=0)
    np.testing.assert_array_equal(jnp.stack(decode(jnp.asarray(data, jnp.float32))), viterbi(data))


# -- a discrete global outside the scan, two chains, reverse ----------------------------
def coupled(data: Any) -> Any:
    probs = jnp.array([[[0.8, 0.2], [0.1, 0.9]], [[0.3, 0.7], [0.6, 0.4]]])
    probs_u = jnp.array([[0.7, 0.3], [0.4, 0.6]])
    w = sample("w", dist.Bernoulli(0.3))

    def step(carry: Any, y: Any) -> Any:
        x, u = carry
        x = sample("x", dist.Categorical(probs[w, x]))
        u = sample("u", dist.Categorical(probs_u[u]))
        sample("y", dist.Normal(2.0 * x - u, 1.0), obs=y)
        return (x, u), None

    scan(step, (0, 0), data, reverse=True)
    return w


def coupled_brute(data: np.ndarray) -> tuple[Any, ...]:
    probs = np.array([[[0.8, 0.2], [0.1, 0.9]], [[0.3, 0.7], [0.6, 0.4]]])
    probs_u = np.array([[0.7, 0.3], [0.4, 0.6]])
    T = len(data)
    best, arg = -np.inf, None
    for w in (0, 1):
        for xs in itertools.product((0, 1), repeat=T):
            for us in itertools.product((0, 1), repeat=T):
                lp, x, u = np.log([0.7, 0.3][w]), 0, 0
                for t in reversed(range(T)):
                    lp += np.log(probs[w, x, xs[t]]) + np.log(probs_u[u, us[t]])
                    lp += normal_lp(2.0 * xs[t] - us[t], data[t])
                    x, u = xs[t], us[t]
                if lp > best:
                    best, arg = lp, (w, xs, us)
    assert arg is not None
    return arg


@pytest.mark.parametrize("T", [1, 4])
def test_map_with_a_global_two_chains_and_reverse(T: int) -> None:
    data = np.random.default_rng(T + 10).normal(size=T) * 1.5

    def decoded(d: Any) -> Any:
        tr = trace(infer_discrete(config_enumerate(coupled), temperature=0)).get_trace(d)
        return tr["w"].value, tr["x"].value, tr["u"].value

    w, x, u = jax.jit(decoded)(jnp.asarray(data, jnp.float32))
    bw, bx, bu = coupled_brute(data)
    assert int(w) == bw
    np.testing.assert_array_equal(x, bx)
    np.testing.assert_array_equal(u, bu)


def local_in_plate(data: Any) -> Any:
    """A chain x and, per step, a local w in a plate (summed out inside the step)."""
    trans = jnp.array([[0.8, 0.2], [0.1, 0.9]])
    locs = jnp.array([[-1.0, 1.0], [2.0, 3.0]])

    def step(x: Any, y: Any) -> Any:
        x = sample("x", dist.Categorical(trans[x]))
        with plate("D", y.shape[-1], dim=-1):
            w = sample("w", dist.Bernoulli(0.6))
            sample("y", dist.Normal(locs[x, w.astype(jnp.int32)], 1.0), obs=y)
        return x, None

    scan(step, 0, data)


def test_map_with_a_local_variable_in_a_plate_is_the_best_assignment() -> None:
    T, D = 3, 2
    data = np.random.default_rng(5).normal(size=(T, D)) * 2
    trans = np.array([[0.8, 0.2], [0.1, 0.9]])
    locs = np.array([[-1.0, 1.0], [2.0, 3.0]])
    best, arg = -np.inf, None
    for xs in itertools.product((0, 1), repeat=T):
        for ws in itertools.product((0, 1), repeat=T * D):
            w = np.reshape(ws, (T, D))
            lp, prev = 0.0, 0
            for t in range(T):
                lp += np.log(trans[prev, xs[t]])
                lp += np.sum(np.log(np.where(w[t] == 1, 0.6, 0.4)))
                lp += np.sum(normal_lp(locs[xs[t], w[t]], data[t]))
                prev = xs[t]
            if lp > best:
                best, arg = lp, (xs, w)
    assert arg is not None

    def decoded(d: Any) -> Any:
        tr = trace(infer_discrete(config_enumerate(local_in_plate), temperature=0)).get_trace(d)
        return tr["x"].value, tr["w"].value

    x, w = jax.jit(decoded)(jnp.asarray(data, jnp.float32))
    np.testing.assert_array_equal(x, arg[0])
    np.testing.assert_array_equal(w, arg[1])


def independent_steps(data: Any) -> Any:
    def step(c: Any, y: Any) -> Any:
        x = sample("x", dist.Categorical(jnp.asarray(WEIGHTS, jnp.float32)))
        sample("y", dist.Normal(jnp.asarray(MEANS, jnp.float32)[x], 1.0), obs=y)
        return c, x

    return scan(step, 0, data, history=0)[1]


def test_map_with_history_zero_is_per_step() -> None:
    data = np.array([-2.5, -0.2, 0.9, 1.7, 3.0])
    post = np.log(WEIGHTS)[:, None] + normal_lp(MEANS[:, None], data)
    decode = jax.jit(
        lambda d: infer_discrete(config_enumerate(independent_steps), temperature=0)(d)
    )
    np.testing.assert_array_equal(decode(jnp.asarray(data, jnp.float32)), post.argmax(0))
