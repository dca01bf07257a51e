"""Chain contractions (`plait.kernels.chain_*`) against float64 NumPy references.

References: brute force over every path (small S and T) and a float64
forward-backward recursion (large T). Tolerances: float32 results against float64
references at rtol 1e-5 (values) and 1e-4 relative norm (gradients, at T = 1e5),
tighter where the problem allows; float64 results at 1e-10.
"""

import functools
import itertools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads as _check_grads
from jaxtyping import TypeCheckError

from plait.kernels import (
    FactoredSteps,
    Semiring,
    Strategy,
    auto_strategy,
    chain_filter,
    chain_logsumexp,
    chain_max,
)

check_grads: Callable[..., None] = _check_grads  # untyped in jax

STRATEGIES = ["sequential", "tree", "associative"]
PREFIX_STRATEGIES = ["sequential", "associative"]


def raises_shape_error(match: str) -> Any:
    """The kernel's ValueError, or jaxtyping's TypeCheckError when its runtime checks run."""
    return pytest.raises((ValueError, TypeCheckError), match=f"{match}|Type-check error")


# ----------------------------------------------------------------- references


def np_logsumexp(x: np.ndarray, axis: int | tuple[int, ...] | None = None) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out: np.ndarray = np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(x - m), axis=axis))
    return out


def path_scores(init: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Score of every path: an array with one axis per state x_0..x_T (float64)."""
    scores = np.asarray(init, np.float64)
    for step in np.asarray(steps, np.float64):
        scores = scores[..., :, None] + step
    return scores


def brute_total(init: np.ndarray, steps: np.ndarray, semiring: Semiring) -> float:
    scores = path_scores(init, steps)
    return float(np.max(scores) if semiring == "max" else np_logsumexp(scores))


def brute_pair_marginals(init: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p(x_0) and p(x_t, x_{t+1}) by enumeration: the gradients of log Z."""
    scores = path_scores(init, steps)
    with np.errstate(invalid="ignore"):
        p = np.exp(scores - np_logsumexp(scores))
    num_steps = steps.shape[0]
    axes = tuple(range(num_steps + 1))
    p0 = p.sum(axis=axes[1:])
    pairs = np.stack([p.sum(axis=tuple(a for a in axes if a not in (t, t + 1))) for t in axes[:-1]])
    return p0, pairs


def brute_filtered(init: np.ndarray, steps: np.ndarray, semiring: Semiring) -> np.ndarray:
    """Normalised forward messages of x_1..x_T by enumeration of prefixes."""
    out = []
    for t in range(1, steps.shape[0] + 1):
        scores = path_scores(init, steps[:t])
        axes = tuple(range(t))
        if semiring == "max":
            m = np.max(scores, axis=axes)
            out.append(m - np.max(m))
        else:
            m = np_logsumexp(scores, axis=axes)
            out.append(m - np_logsumexp(m))
    return np.stack(out)


def forward_backward64(init: np.ndarray, steps: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """log Z, d log Z / d init and d log Z / d steps in float64 (scaled recursions).

    Each step matrix is rescaled by its maximum (float64 has the range for the
    test inputs); forward and backward vectors are normalised every step.
    """
    init = np.asarray(init, np.float64)
    steps = np.asarray(steps, np.float64)
    num_steps = steps.shape[0]
    shifts = steps.max(axis=(1, 2))
    mats = np.exp(steps - shifts[:, None, None])
    alpha = np.empty((num_steps + 1, init.shape[0]))
    v = np.exp(init - init.max())
    log_z = init.max() + np.log(v.sum()) + shifts.sum()
    v /= v.sum()
    alpha[0] = v
    for t in range(num_steps):
        v = v @ mats[t]
        c = v.sum()
        log_z += np.log(c)
        v /= c
        alpha[t + 1] = v
    beta = np.empty_like(alpha)
    b = np.ones(init.shape[0])
    beta[num_steps] = b
    for t in range(num_steps - 1, -1, -1):
        b = mats[t] @ b
        b /= b.sum()
        beta[t] = b
    pairs = alpha[:-1, :, None] * mats * beta[1:, None, :]
    pairs /= pairs.sum(axis=(1, 2), keepdims=True)
    g0 = alpha[0] * beta[0]
    return float(log_z), g0 / g0.sum(), pairs


def rel_norm(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def random_chain(
    seed: int, num_states: int, num_steps: int, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    init = (scale * rng.normal(size=num_states)).astype(np.float32)
    steps = (scale * rng.normal(size=(num_steps, num_states, num_states))).astype(np.float32)
    return init, steps


def log_z(strategy: Strategy) -> Callable[[jax.Array, jax.Array], jax.Array]:
    def f(init: jax.Array, steps: jax.Array) -> jax.Array:
        return jnp.sum(chain_logsumexp(init, steps, strategy=strategy).log_normalizer)

    return f


# Tests call the kernels under jit, as a model would (eager dispatch of the
# parallel forms' many small operations is slow).
contract = jax.jit(
    lambda init, steps, semiring, strategy: (chain_max if semiring == "max" else chain_logsumexp)(
        init, steps, strategy=strategy
    ),
    static_argnums=(2, 3),
)
filter_ = jax.jit(
    lambda init, steps, semiring, strategy: chain_filter(
        init, steps, semiring=semiring, strategy=strategy
    ),
    static_argnums=(2, 3),
)


@functools.cache
def value_and_grads(strategy: Strategy) -> Any:
    return jax.jit(jax.value_and_grad(log_z(strategy), argnums=(0, 1)))


# ------------------------------------------------------- values, small chains


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("semiring", ["log", "max"])
@pytest.mark.parametrize(("num_states", "num_steps"), [(2, 1), (3, 5), (4, 6)])
def test_total_matches_brute_force(
    strategy: Strategy, semiring: Semiring, num_states: int, num_steps: int
) -> None:
    init, steps = random_chain(num_states * 10 + num_steps, num_states, num_steps)
    result = contract(init, steps, semiring, strategy)
    expected = brute_total(init, steps, semiring)
    np.testing.assert_allclose(result.log_normalizer, expected, rtol=1e-6, atol=1e-6)
    # log_final: the (max-)marginal of x_T.
    scores = path_scores(init, steps)
    axes = tuple(range(num_steps))
    if semiring == "max":
        final = np.max(scores, axis=axes)
        final -= final.max()
    else:
        final = np_logsumexp(scores, axis=axes)
        final -= np_logsumexp(final)
    np.testing.assert_allclose(result.log_final, final, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_zero_steps_is_logsumexp_of_init(strategy: Strategy) -> None:
    init = np.array([0.5, -1.0, 2.0], np.float32)
    steps = np.zeros((0, 3, 3), np.float32)
    result = chain_logsumexp(init, steps, strategy=strategy)
    np.testing.assert_allclose(result.log_normalizer, np_logsumexp(init.astype(float)), rtol=1e-6)
    np.testing.assert_allclose(result.log_final, init - np_logsumexp(init.astype(float)), atol=1e-6)
    assert chain_filter(init, steps).log_filtered.shape == (0, 3)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_flat_steps_have_closed_form(strategy: Strategy) -> None:
    num_states, num_steps, c = 4, 6, -0.3
    init = np.zeros(num_states, np.float32)
    steps = np.full((num_steps, num_states, num_states), c, np.float32)
    expected = np.log(num_states) + num_steps * (c + np.log(num_states))
    value, (g_init, g_steps) = value_and_grads(strategy)(init, steps)
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    np.testing.assert_allclose(g_init, np.full(num_states, 1 / num_states), rtol=1e-5)
    np.testing.assert_allclose(g_steps, np.full(steps.shape, 1 / num_states**2), rtol=1e-5)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("scale", [30.0, 300.0])
def test_peaked_steps_match_brute_force(strategy: Strategy, scale: float) -> None:
    # Entries spread over hundreds of nats: a probability-space shortcut underflows.
    init, steps = random_chain(7, 4, 6, scale=scale)
    value, (g_init, g_steps) = value_and_grads(strategy)(init, steps)
    np.testing.assert_allclose(value, brute_total(init, steps, "log"), rtol=1e-6)
    max_value = contract(init, steps, "max", strategy).log_normalizer
    np.testing.assert_allclose(max_value, brute_total(init, steps, "max"), rtol=1e-6)
    p0, pairs = brute_pair_marginals(init, steps)
    np.testing.assert_allclose(g_init, p0, atol=1e-5)
    np.testing.assert_allclose(g_steps, pairs, atol=1e-5)


# -------------------------------------------------------------- -inf entries


def left_right_chain(seed: int, num_states: int, num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """A left-to-right chain (stay or move up one state) with sharp emissions."""
    rng = np.random.default_rng(seed)
    trans = np.full((num_states, num_states), -np.inf)
    for i in range(num_states):
        trans[i, i] = np.log(0.7)
        if i + 1 < num_states:
            trans[i, i + 1] = np.log(0.3)
    emission = 40.0 * rng.normal(size=(num_steps, num_states))
    steps = (trans[None] + emission[:, None, :]).astype(np.float32)
    init = np.full(num_states, -np.inf, np.float32)
    init[0] = 0.0
    return init, steps


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_forbidden_transitions_value_and_gradient(strategy: Strategy) -> None:
    init, steps = left_right_chain(0, 4, 6)
    value, (g_init, g_steps) = value_and_grads(strategy)(init, steps)
    np.testing.assert_allclose(value, brute_total(init, steps, "log"), rtol=1e-6)
    assert np.all(np.isfinite(g_init)) and np.all(np.isfinite(g_steps))
    p0, pairs = brute_pair_marginals(init, steps)
    np.testing.assert_allclose(g_init, p0, atol=1e-5)
    np.testing.assert_allclose(g_steps, pairs, atol=1e-5)
    assert np.all(g_steps[np.isneginf(steps)] == 0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_dead_and_unreachable_states_give_no_nan(strategy: Strategy) -> None:
    init, steps = random_chain(3, 4, 6)
    init[1] = -np.inf
    steps[:, 2, :] = -np.inf  # state 2 leads nowhere
    steps[:, :, 3] = -np.inf  # state 3 is never entered
    value, (g_init, g_steps) = value_and_grads(strategy)(init, steps)
    np.testing.assert_allclose(value, brute_total(init, steps, "log"), rtol=1e-6)
    p0, pairs = brute_pair_marginals(init, steps)
    np.testing.assert_allclose(g_init, p0, atol=1e-6)
    np.testing.assert_allclose(g_steps, pairs, atol=1e-6)
    max_value = contract(init, steps, "max", strategy).log_normalizer
    np.testing.assert_allclose(max_value, brute_total(init, steps, "max"), rtol=1e-6)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_impossible_chain_is_minus_infinity(strategy: Strategy) -> None:
    init, steps = random_chain(4, 4, 6)
    steps[2] = -np.inf
    assert contract(init, steps, "log", strategy).log_normalizer == -np.inf
    assert contract(init, steps, "max", strategy).log_normalizer == -np.inf


# ------------------------------------------------------------------ gradients


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(("num_states", "num_steps"), [(2, 1), (4, 6)])
def test_gradient_is_pair_marginals(strategy: Strategy, num_states: int, num_steps: int) -> None:
    init, steps = random_chain(num_states + num_steps, num_states, num_steps)
    _, (g_init, g_steps) = value_and_grads(strategy)(init, steps)
    p0, pairs = brute_pair_marginals(init, steps)
    np.testing.assert_allclose(g_init, p0, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g_steps, pairs, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("semiring", ["log", "max"])
def test_float64_derivatives_match_finite_differences(
    strategy: Strategy, semiring: Semiring
) -> None:
    # Forward and reverse mode, first and second order, against central differences.
    init, steps = random_chain(11, 3, 5)
    fn = chain_max if semiring == "max" else chain_logsumexp
    with jax.enable_x64(True):
        args = (jnp.asarray(init, jnp.float64), jnp.asarray(steps, jnp.float64))

        @jax.jit
        def total(i: jax.Array, s: jax.Array) -> jax.Array:
            return fn(i, s, strategy=strategy).log_normalizer

        assert total(*args).dtype == jnp.float64
        np.testing.assert_allclose(total(*args), brute_total(init, steps, semiring), rtol=1e-12)
        # Reverse mode of every strategy is also checked against exact marginals below.
        check_grads(
            total, args, order=1, modes=("fwd", "rev") if strategy == "sequential" else ("fwd",)
        )
        if semiring == "log" and strategy == "sequential":
            # Second order (Hessian-vector products), as NUTS mass adaptation or a
            # Laplace approximation would use; the max is piecewise linear.
            check_grads(total, args, order=2, modes=("rev",))


@pytest.mark.parametrize("strategy", PREFIX_STRATEGIES)
def test_filtered_messages_are_differentiable(strategy: Strategy) -> None:
    init, steps = random_chain(14, 3, 4)
    weights = np.random.default_rng(0).normal(size=(4, 3))
    with jax.enable_x64(True):
        args = (jnp.asarray(init, jnp.float64), jnp.asarray(steps, jnp.float64))

        @jax.jit
        def weighted(i: jax.Array, s: jax.Array) -> jax.Array:
            return jnp.sum(weights * chain_filter(i, s, strategy=strategy).log_filtered)

        check_grads(weighted, args, order=1, modes=("rev",))


def test_max_gradient_is_best_path_indicator() -> None:
    init, steps = random_chain(12, 4, 6)
    scores = path_scores(init, steps)
    best = np.unravel_index(np.argmax(scores), scores.shape)
    for strategy in STRATEGIES:
        g_init, g_steps = jax.jit(
            jax.grad(
                lambda i, s, strategy=strategy: chain_max(i, s, strategy=strategy).log_normalizer,
                argnums=(0, 1),
            )
        )(init, steps)
        expected = np.zeros(steps.shape)
        for t in range(steps.shape[0]):
            expected[t, best[t], best[t + 1]] = 1.0
        np.testing.assert_array_equal(g_steps, expected)
        np.testing.assert_array_equal(g_init, np.eye(4)[best[0]])


# --------------------------------------------------------------- long chains


LongChain = tuple[np.ndarray, np.ndarray, tuple[float, np.ndarray, np.ndarray]]


@pytest.fixture(scope="module")
def long_chain() -> LongChain:
    init, steps = random_chain(2024, 3, 100_000)
    steps -= 1.0
    return init, steps, forward_backward64(init, steps)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_float32_accuracy_at_1e5_steps(long_chain: LongChain, strategy: Strategy) -> None:
    init, steps, (ref, ref_g0, ref_pairs) = long_chain
    value, (g_init, g_steps) = value_and_grads(strategy)(init, steps)
    assert abs(float(value) - ref) / abs(ref) < 1e-5
    assert rel_norm(g_steps, ref_pairs) < 1e-4
    assert rel_norm(g_init, ref_g0) < 1e-4
    # What a shared parameter sees: the gradient summed over time.
    assert rel_norm(np.sum(np.asarray(g_steps, np.float64), 0), ref_pairs.sum(0)) < 1e-4


def test_factored_float32_accuracy_at_1e5_steps() -> None:
    rng = np.random.default_rng(5)
    num_steps, num_states = 100_000, 3
    init = rng.normal(size=num_states).astype(np.float32)
    transition = np.log(rng.dirichlet(np.ones(num_states), size=num_states)).astype(np.float32)
    emission = (-0.5 * rng.normal(size=(num_steps, num_states)) ** 2).astype(np.float32)
    dense = transition[None] + emission[:, None, :]
    ref, _, ref_pairs = forward_backward64(init, dense)

    def total(trans: jax.Array, em: jax.Array) -> jax.Array:
        steps = FactoredSteps(trans[None], em)
        return chain_logsumexp(init, steps, strategy="sequential").log_normalizer

    value, (g_trans, g_em) = jax.jit(jax.value_and_grad(total, argnums=(0, 1)))(
        transition, emission
    )
    assert abs(float(value) - ref) / abs(ref) < 1e-5
    assert rel_norm(g_trans, ref_pairs.sum(0)) < 1e-4
    assert rel_norm(g_em, ref_pairs.sum(1)) < 1e-4


# ------------------------------------------------------------------ filtering


@pytest.mark.parametrize("strategy", PREFIX_STRATEGIES)
@pytest.mark.parametrize("semiring", ["log", "max"])
def test_filtered_messages_match_brute_force(strategy: Strategy, semiring: Semiring) -> None:
    init, steps = random_chain(21, 4, 6)
    steps[2, 0, :] = -np.inf
    result = filter_(init, steps, semiring, strategy)
    expected = brute_filtered(init, steps, semiring)
    assert result.log_filtered.shape == (6, 4)
    np.testing.assert_allclose(result.log_filtered, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.log_normalizer, brute_total(init, steps, semiring), rtol=1e-6)


@pytest.mark.parametrize("strategy", PREFIX_STRATEGIES)
def test_filtered_messages_are_accurate_on_long_chains(
    long_chain: LongChain, strategy: Strategy
) -> None:
    init, steps, _ = long_chain
    steps = steps[:5_000]
    log_filtered = np.asarray(filter_(init, steps, "log", strategy).log_filtered)
    # float64 scaled forward recursion.
    v = np.exp(init - init.max()).astype(np.float64)
    v /= v.sum()
    mats = np.exp(steps.astype(np.float64))
    expected = np.empty((steps.shape[0], 3))
    for t in range(steps.shape[0]):
        v = v @ mats[t]
        v /= v.sum()
        expected[t] = v
    np.testing.assert_allclose(np.exp(log_filtered), expected, rtol=1e-5, atol=1e-7)


def test_tree_has_no_prefix_messages() -> None:
    init, steps = random_chain(0, 2, 3)
    with pytest.raises(ValueError, match='strategy="tree" computes the total only'):
        chain_filter(init, steps, strategy="tree")


# -------------------------------------------------------------- batching etc.


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_batch_dimensions_broadcast(strategy: Strategy) -> None:
    rng = np.random.default_rng(9)
    init = rng.normal(size=(2, 1, 3)).astype(np.float32)
    steps = rng.normal(size=(4, 5, 3, 3)).astype(np.float32)
    result = contract(init, steps, "log", strategy)
    assert result.log_normalizer.shape == (2, 4)
    assert result.log_final.shape == (2, 4, 3)
    for a, b in itertools.product(range(2), range(4)):
        expected = brute_total(init[a, 0], steps[b], "log")
        np.testing.assert_allclose(result.log_normalizer[a, b], expected, rtol=1e-6)
    if strategy != "tree":
        filtered = filter_(init, steps, "log", strategy).log_filtered
        assert filtered.shape == (2, 4, 5, 3)
        np.testing.assert_allclose(
            filtered[1, 2], brute_filtered(init[1, 0], steps[2], "log"), rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("strategy", ["sequential", "tree"])
def test_jit_matches_eager(strategy: Strategy) -> None:
    init, steps = random_chain(13, 3, 3)
    eager = chain_logsumexp(init, steps, strategy=strategy)
    jitted = jax.jit(chain_logsumexp, static_argnames="strategy")(init, steps, strategy=strategy)
    np.testing.assert_allclose(jitted.log_normalizer, eager.log_normalizer, rtol=1e-6)
    np.testing.assert_allclose(jitted.log_final, eager.log_final, rtol=1e-6, atol=1e-6)


def factored_chain(shared: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(17)
    num_steps = 6
    transition = rng.normal(size=(1 if shared else num_steps, 4, 4)).astype(np.float32)
    transition[:, 1, 2] = -np.inf
    emission = rng.normal(size=(2, num_steps, 4)).astype(np.float32)  # batch of 2
    init = rng.normal(size=4).astype(np.float32)
    return init, transition, emission, transition + emission[..., None, :]


@pytest.mark.parametrize("shared", [True, False])
def test_sequential_factored_steps_equal_dense_steps(shared: bool) -> None:
    # The sequential strategy has its own step for a shared transition.
    init, transition, emission, dense = factored_chain(shared)

    def total(trans: jax.Array, em: jax.Array) -> jax.Array:
        steps = FactoredSteps(trans, em)
        return jnp.sum(chain_logsumexp(init, steps, strategy="sequential").log_normalizer)

    value, (g_trans, g_em) = jax.jit(jax.value_and_grad(total, argnums=(0, 1)))(
        transition, emission
    )
    _, (_, g_dense) = value_and_grads("sequential")(init, dense)
    np.testing.assert_allclose(value, sum(brute_total(init, d, "log") for d in dense), rtol=1e-6)
    np.testing.assert_allclose(g_em, np.sum(g_dense, axis=-2), rtol=1e-5, atol=1e-6)
    g_trans_dense = np.sum(g_dense, axis=(0, 1) if shared else 0)
    np.testing.assert_allclose(g_trans, g_trans_dense.reshape(g_trans.shape), rtol=1e-5, atol=1e-6)
    for semiring in ("log", "max"):
        factored = FactoredSteps(transition, emission)
        result = contract(init, factored, semiring, "sequential")
        expected = [brute_total(init, d, semiring) for d in dense]
        np.testing.assert_allclose(result.log_normalizer, expected, rtol=1e-6)
        filtered = filter_(init, factored, semiring, "sequential")
        messages = [brute_filtered(init, d, semiring) for d in dense]
        np.testing.assert_allclose(filtered.log_filtered, messages, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strategy", ["tree", "associative"])
def test_parallel_strategies_accept_factored_steps(strategy: Strategy) -> None:
    init, transition, emission, dense = factored_chain(shared=True)
    result = contract(init, FactoredSteps(transition, emission), "log", strategy)
    expected = [brute_total(init, d, "log") for d in dense]
    np.testing.assert_allclose(result.log_normalizer, expected, rtol=1e-6)


def test_auto_picks_sequential_on_cpu_and_parallel_on_accelerators() -> None:
    assert auto_strategy(100_000, 16, backend="cpu") == "sequential"
    assert auto_strategy(100_000, 16, backend="gpu") == "tree"
    assert auto_strategy(100_000, 16, backend="gpu", prefix=True) == "associative"
    assert auto_strategy(8, 16, backend="gpu") == "sequential"
    init, steps = random_chain(1, 3, 4)
    np.testing.assert_allclose(
        chain_logsumexp(init, steps).log_normalizer, brute_total(init, steps, "log"), rtol=1e-6
    )


def test_rejects_mismatched_shapes_dtypes_and_options() -> None:
    init, steps = random_chain(0, 3, 4)
    with raises_shape_error(r"init of shape \(\*batch, S\)"):
        chain_logsumexp(init[:2], steps)
    with pytest.raises(TypeError, match="share one floating dtype"):
        chain_logsumexp(init.astype(np.float16), steps)
    with raises_shape_error("strategy must be"):
        chain_logsumexp(init, steps, strategy="parallel")  # type: ignore[arg-type]
    with raises_shape_error("semiring must be"):
        chain_filter(init, steps, semiring="sum")  # type: ignore[arg-type]
    with raises_shape_error("FactoredSteps"):
        chain_logsumexp(init, FactoredSteps(steps[:2], np.zeros((4, 3), np.float32)))
