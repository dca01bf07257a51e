"""`logsumexp_einsum` and `max_einsum` against float64 NumPy brute force.

The reference aligns every operand over the union of the indices, adds them and
reduces the summed indices (log-sum-exp or max) in float64. Tolerances: rtol 1e-6
with atol 1e-5 for float32 results (values up to ~1e3).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plait.kernels import logsumexp_einsum, max_einsum


def brute(equation: str, operands: Sequence[np.ndarray], reduce: str) -> np.ndarray:
    lhs, output = equation.split("->")
    inputs = lhs.split(",")
    union = "".join(dict.fromkeys("".join(inputs)))
    sizes: dict[str, int] = {}
    for s, x in zip(inputs, operands, strict=True):
        sizes.update(zip(s, x.shape, strict=True))
    total = np.zeros([sizes[c] for c in union])
    for s, x in zip(inputs, operands, strict=True):
        kept = "".join(dict.fromkeys(s))
        x = np.einsum(f"{s}->{kept}", np.asarray(x, np.float64))  # diagonals, no sums
        order = sorted(kept, key=union.index)
        x = np.transpose(x, [kept.index(c) for c in order])
        total = total + x.reshape([sizes[c] if c in kept else 1 for c in union])
    axes = tuple(i for i, c in enumerate(union) if c not in output)
    if reduce == "max":
        out = np.max(total, axis=axes) if axes else total
    else:
        if axes:
            m = np.max(total, axis=axes, keepdims=True)
            m = np.where(np.isfinite(m), m, 0.0)
            with np.errstate(divide="ignore"):
                out = np.squeeze(m, axes) + np.log(np.sum(np.exp(total - m), axis=axes))
        else:
            out = total
    kept_order = "".join(c for c in union if c in output)
    result: np.ndarray = np.transpose(out, [kept_order.index(c) for c in output])
    return result


EQUATIONS: list[tuple[str, list[tuple[int, ...]]]] = [
    ("ab,bc->ac", [(3, 4), (4, 5)]),
    ("ab,bc,cd->ad", [(3, 4), (4, 5), (5, 2)]),
    ("abc,bcd,da->", [(2, 3, 4), (3, 4, 5), (5, 2)]),
    ("ab,ab->a", [(3, 4), (3, 4)]),  # one operand's indices inside the other's
    ("ab,b->ab", [(3, 4), (4,)]),
    ("a,b->ab", [(3,), (4,)]),  # outer product
    ("aa->a", [(3, 3)]),  # diagonal
    ("aab,bc->ac", [(3, 3, 4), (4, 2)]),
    ("abc->ca", [(2, 3, 4)]),
    ("ia,ib,ab,i->i", [(5, 3), (5, 4), (3, 4), (5,)]),  # a plate i, two enumerated a, b
    ("abc,c->bac", [(2, 3, 4), (4,)]),
]


@pytest.mark.parametrize(("equation", "shapes"), EQUATIONS)
def test_logsumexp_einsum_matches_brute_force(equation: str, shapes: list[tuple[int, ...]]) -> None:
    rng = np.random.default_rng(len(equation))
    # Offsets of ±500 per operand: a plain exp would overflow or underflow.
    operands = [(rng.normal(size=s) + rng.choice([-500, 500])).astype(np.float32) for s in shapes]
    out = logsumexp_einsum(equation, *operands)
    np.testing.assert_allclose(out, brute(equation, operands, "log"), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize(("equation", "shapes"), EQUATIONS)
def test_max_einsum_matches_brute_force(equation: str, shapes: list[tuple[int, ...]]) -> None:
    rng = np.random.default_rng(len(equation) + 1)
    operands = [rng.normal(size=s).astype(np.float32) for s in shapes]
    out = max_einsum(equation, *operands)
    np.testing.assert_allclose(out, brute(equation, operands, "max"), rtol=1e-6, atol=1e-6)


def test_implicit_output_follows_numpy() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(
        logsumexp_einsum("ab,bc", x, y), brute("ab,bc->ac", [x, y], "log"), rtol=1e-6
    )


@pytest.mark.parametrize("optimize", ["greedy", "optimal"])
def test_contraction_order_does_not_change_the_result(optimize: str) -> None:
    rng = np.random.default_rng(1)
    equation, shapes = EQUATIONS[2]
    operands = [rng.normal(size=s).astype(np.float32) for s in shapes]
    out = logsumexp_einsum(equation, *operands, optimize=optimize)
    np.testing.assert_allclose(out, brute(equation, operands, "log"), rtol=1e-6, atol=1e-6)


def test_minus_infinity_gives_no_nan_in_value_or_gradient() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    y = rng.normal(size=(4, 5)).astype(np.float32)
    z = rng.normal(size=(5, 2)).astype(np.float32)
    x[0, :] = -np.inf  # output row 0 is -inf
    y[1, :] = -np.inf  # a dead intermediate value
    z[:, 1] = -np.inf  # output column 1 is -inf
    equation = "ab,bc,cd->ad"
    expected = brute(equation, [x, y, z], "log")
    out = logsumexp_einsum(equation, x, y, z)
    np.testing.assert_array_equal(np.isneginf(out), np.isneginf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(np.asarray(out)[finite], expected[finite], rtol=1e-6)

    def finite_sum(x: jax.Array, y: jax.Array, z: jax.Array) -> jax.Array:
        out = logsumexp_einsum(equation, x, y, z)
        return jnp.sum(jnp.where(jnp.isfinite(out), out, 0.0))

    grads = jax.jit(jax.grad(finite_sum, argnums=(0, 1, 2)))(x, y, z)
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_gradient_matches_float64_naive_formula() -> None:
    # Reference: d/dx of log(einsum(exp(x), exp(y), exp(z))) in float64, without shifts.
    rng = np.random.default_rng(3)
    equation, shapes = EQUATIONS[9]
    operands = [rng.normal(size=s).astype(np.float32) for s in shapes]
    weights = rng.normal(size=5)

    def loss(*ops: jax.Array) -> jax.Array:
        return jnp.sum(weights * logsumexp_einsum(equation, *ops))

    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(*operands)
    with jax.enable_x64(True):

        def naive(*ops: jax.Array) -> jax.Array:
            out = jnp.log(jnp.einsum(equation, *[jnp.exp(x) for x in ops]))
            return jnp.sum(jnp.asarray(weights) * out)

        ops64 = [jnp.asarray(x, jnp.float64) for x in operands]
        expected = jax.jit(jax.grad(naive, argnums=(0, 1, 2, 3)))(*ops64)
        expected = [np.asarray(e) for e in expected]
    for g, e in zip(grads, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def test_keeps_every_slice_within_87_nats_of_its_maximum() -> None:
    # Spreads of hundreds of nats: an entry near the maximum of its row and of its
    # column is exact (the pairwise step keeps one of the two slicings exactly).
    rng = np.random.default_rng(4)
    x = (100 * rng.normal(size=(6, 7))).astype(np.float32)
    y = (100 * rng.normal(size=(7, 8))).astype(np.float32)
    expected = brute("ab,bc->ac", [x, y], "log")
    out = np.asarray(logsumexp_einsum("ab,bc->ac", x, y), np.float64)
    near_row = expected >= expected.max(axis=1, keepdims=True) - 80
    near_column = expected >= expected.max(axis=0, keepdims=True) - 80
    near = near_row & near_column
    assert near.sum() >= 8
    np.testing.assert_allclose(out[near], expected[near], rtol=1e-6)


def test_float64_in_float64_out() -> None:
    with jax.enable_x64(True):
        x = np.random.default_rng(5).normal(size=(3, 3))
        out = logsumexp_einsum("ab,bc->ac", jnp.asarray(x), jnp.asarray(x))
        assert out.dtype == jnp.float64
        np.testing.assert_allclose(out, brute("ab,bc->ac", [x, x], "log"), rtol=1e-12)


def test_rejects_malformed_equations() -> None:
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="ellipses are not supported"):
        logsumexp_einsum("...a,a->...", x, x[0])
    with pytest.raises(ValueError, match="names 2 operands; got 1"):
        logsumexp_einsum("ab,bc->ac", x)
    with pytest.raises(ValueError, match="index 'b' has sizes 3 and 2"):
        logsumexp_einsum("ab,bc->ac", x, x)
    with pytest.raises(ValueError, match="every output letter"):
        logsumexp_einsum("ab->c", x)
    with pytest.raises(TypeError, match="one floating dtype"):
        max_einsum("ab,ab->", x, x.astype(np.float16))
