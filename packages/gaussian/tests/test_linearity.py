"""The linearity analysis (`linear_gaussian`): decisions from the jaxpr, exact coefficients.

Affine steps are checked against coefficients written out by hand (NumPy);
non-affine ones must name the primitive at fault. Nothing here probes values: the
decision for a function is the same whatever ``x_prev`` and ``inputs`` hold.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from plait.gaussian._linearity import LinearGaussian, NotLinearGaussian, linear_gaussian

X = jnp.array([0.3, -1.2, 2.0])
PHI = jnp.array([[0.5, 0.1, 0.0], [0.2, -0.3, 0.4], [0.0, 0.7, 0.1]])
U = jnp.array([1.5, -0.5, 2.5])
INPUTS = {"phi": PHI, "u": U}


def affine(mean_fn: Callable[[Any, Any], jax.Array], x: Any = X) -> LinearGaussian:
    result = linear_gaussian(mean_fn, None, x, INPUTS)
    assert isinstance(result, LinearGaussian), result
    return result


def companion(x: jax.Array, inp: dict[str, jax.Array]) -> jax.Array:
    # An AR(2)-style companion step: new first entry, the rest shifted down.
    return jnp.concatenate([inp["phi"][0:1] @ x + inp["u"][0], x[:-1]])


AFFINE_CASES: dict[str, tuple[Callable[[Any, Any], jax.Array], np.ndarray, np.ndarray]] = {
    "scale_and_shift": (lambda x, i: 0.9 * x + i["u"], 0.9 * np.eye(3), np.asarray(U)),
    "matrix_product": (lambda x, i: i["phi"] @ x - 1.0, np.asarray(PHI), -np.ones(3)),
    "transposed_dot": (lambda x, i: jnp.dot(x, i["phi"].T), np.asarray(PHI), np.zeros(3)),
    "einsum": (lambda x, i: jnp.einsum("ij,j->i", i["phi"], x), np.asarray(PHI), np.zeros(3)),
    "companion": (
        companion,
        np.array([np.asarray(PHI[0]), [1.0, 0, 0], [0, 1.0, 0]]),
        np.array([float(U[0]), 0, 0]),
    ),
    "reshape_transpose_broadcast": (
        lambda x, i: (jnp.broadcast_to(x, (2, 3)).T.reshape(6)[::2] / i["u"]) * 2.0,
        np.diag(2.0 / np.asarray(U)),
        np.zeros(3),
    ),
    "select_on_inputs": (
        lambda x, i: jnp.where(i["u"] > 0, x, -x),
        np.diag(np.where(np.asarray(U) > 0, 1.0, -1.0)),
        np.zeros(3),
    ),
    "nonlinear_in_inputs_only": (
        lambda x, i: jnp.sin(i["u"]) * x + jnp.exp(i["u"]),
        np.diag(np.sin(np.asarray(U))),
        np.exp(np.asarray(U)),
    ),
    "custom_jvp_and_jit_of_inputs": (
        lambda x, i: jax.nn.softplus(i["u"]) * jax.jit(lambda a: a - x[0])(x),
        np.diag(np.log1p(np.exp(np.asarray(U))))
        - np.outer(np.log1p(np.exp(np.asarray(U))), [1, 0, 0]),
        np.zeros(3),
    ),
    "indexing_with_input_index": (
        lambda x, i: x[jnp.argmax(i["u"])] + x,
        np.eye(3) + np.outer(np.ones(3), [0, 0, 1.0]),
        np.zeros(3),
    ),
    "cond_on_inputs": (
        lambda x, i: lax.cond(i["u"][0] > 0, lambda v: 2.0 * v, lambda v: -v, x),
        2.0 * np.eye(3),
        np.zeros(3),
    ),
    "cumsum_and_sum": (
        lambda x, i: jnp.cumsum(x) + jnp.sum(x),
        np.tril(np.ones((3, 3))) + np.ones((3, 3)),
        np.zeros(3),
    ),
    "float_cast_and_power_one": (
        lambda x, i: lax.integer_pow(x.astype(jnp.float32), 1) + i["u"].astype(jnp.int32),
        np.eye(3),
        np.trunc(np.asarray(U)),
    ),
    "constant_mean": (lambda x, i: i["u"] * 2.0, np.zeros((3, 3)), 2.0 * np.asarray(U)),
    "dead_nonlinear_code": (lambda x, i: (jnp.sin(x), 3.0 * x)[1], 3.0 * np.eye(3), np.zeros(3)),
}


@pytest.mark.parametrize("case", list(AFFINE_CASES))
def test_affine_means_give_their_exact_coefficients(case: str) -> None:
    mean_fn, matrix, offset = AFFINE_CASES[case]
    result = affine(mean_fn)
    np.testing.assert_allclose(result.matrix, matrix, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(result.offset, offset, rtol=1e-6, atol=1e-7)
    # The coefficients reproduce the mean at any latent value.
    np.testing.assert_allclose(
        mean_fn(X, INPUTS), result.matrix @ np.asarray(X) + result.offset, rtol=1e-5, atol=1e-6
    )


NOT_AFFINE: dict[str, tuple[Callable[[Any, Any], jax.Array], str, str]] = {
    "sin": (lambda x, i: jnp.sin(x), "sin", "`sin` of the previous latent"),
    "square_by_mul": (lambda x, i: x * x, "mul", "`mul` of two terms that depend on"),
    "square_by_power": (lambda x, i: x**2, "integer_pow", "`integer_pow` (power 2)"),
    "quadratic_form": (
        lambda x, i: (x @ i["phi"] @ x) * i["u"],
        "dot_general",
        "`dot_general` of two",
    ),
    "division_by_latent": (lambda x, i: i["u"] / x, "div", "`div` by a term that depends"),
    "abs": (lambda x, i: jnp.abs(x), "abs", "`abs` of the previous latent"),
    "relu": (lambda x, i: jax.nn.relu(x), "max", "`max` of the previous latent"),
    "softplus_custom_jvp": (lambda x, i: jax.nn.softplus(x), "max", "`max` of the previous latent"),
    "select_on_latent": (
        lambda x, i: jnp.where(x > 0, x, 0.0),
        "select_n",
        "`select_n` with a predicate that depends on the previous latent",
    ),
    "index_from_latent": (
        lambda x, i: x[jnp.argmax(x)] * i["u"],
        "dynamic_slice",
        "`dynamic_slice` with an index",
    ),
    "stop_gradient": (lambda x, i: lax.stop_gradient(x), "stop_gradient", "`stop_gradient`"),
    "integer_cast": (
        lambda x, i: x.astype(jnp.int32).astype(jnp.float32),
        "convert_element_type",
        "int32",
    ),
    "loop": (
        lambda x, i: lax.scan(lambda c, _: (0.5 * c, None), x, None, length=3)[0],
        "scan",
        "a `scan` loop",
    ),
    "cond_on_latent": (
        lambda x, i: lax.cond(x[0] > 0, lambda v: v, lambda v: -v, x),
        "cond",
        "`cond` on a predicate",
    ),
    "inside_jit": (lambda x, i: jax.jit(jnp.tanh)(x) + i["u"], "tanh", "`tanh` of the previous"),
}


@pytest.mark.parametrize("case", list(NOT_AFFINE))
def test_non_affine_means_name_the_operation(case: str) -> None:
    mean_fn, primitive, detail = NOT_AFFINE[case]
    result = linear_gaussian(mean_fn, None, X, INPUTS)
    assert isinstance(result, NotLinearGaussian)
    assert result.primitive == primitive
    assert result.reason.startswith("its mean is not affine in the previous latent (")
    assert detail in result.reason


def test_the_error_clause_reads_as_a_sentence() -> None:
    result = linear_gaussian(lambda x, i: jnp.sin(x), None, X, INPUTS)
    assert isinstance(result, NotLinearGaussian)
    assert f"site 'x' is not linear-Gaussian: {result.reason}" == (
        "site 'x' is not linear-Gaussian: its mean is not affine in the previous latent "
        "(`sin` of the previous latent)"
    )


@pytest.mark.parametrize(
    ("scale_fn", "primitive", "detail"),
    [
        (lambda x, i: jnp.exp(x), "exp", "(`exp` of the previous latent)"),
        (lambda x, i: x, "input", "(is the previous latent)"),
        (lambda x, i: x + i["u"], "add", "(through `add`)"),
        (lambda x, i: (i["u"], 2.0 * x), "mul", "(through `mul`)"),
    ],
)
def test_a_scale_that_depends_on_the_latent_is_refused(
    scale_fn: Callable[[Any, Any], Any], primitive: str, detail: str
) -> None:
    result = linear_gaussian(lambda x, i: 0.5 * x, scale_fn, X, INPUTS)
    assert isinstance(result, NotLinearGaussian)
    assert result.primitive == primitive
    assert result.reason == f"its scale depends on the previous latent {detail}"


def test_a_scale_of_the_inputs_only_is_returned() -> None:
    result = linear_gaussian(
        lambda x, i: 0.5 * x, lambda x, i: jnp.exp(i["u"]) * jnp.ones_like(x), X, INPUTS
    )
    assert isinstance(result, LinearGaussian)
    np.testing.assert_allclose(result.scale, np.exp(np.asarray(U)), rtol=1e-6)


def test_a_pytree_latent_gets_one_block_per_leaf() -> None:
    def mean_fn(x: dict[str, jax.Array], i: Any) -> jax.Array:
        return i["phi"][:, :2] @ x["a"] + 3.0 * x["b"] + 1.0

    x = {"a": jnp.zeros(2), "b": jnp.ones(())}
    result = affine(mean_fn, x)
    np.testing.assert_allclose(result.matrix["a"], PHI[:, :2])
    np.testing.assert_allclose(result.matrix["b"], 3.0 * np.ones(3))
    np.testing.assert_allclose(result.offset, np.ones(3))
    bad = linear_gaussian(lambda x, i: x["a"][0] * x["b"] * jnp.ones(3), None, x, INPUTS)
    assert isinstance(bad, NotLinearGaussian) and bad.primitive == "mul"


def test_the_decision_does_not_depend_on_values() -> None:
    # x / x is affine nowhere, including at the x = 1 where it happens to be constant.
    for x in (jnp.ones(3), X):
        result = linear_gaussian(lambda x, i: x / x, None, x, INPUTS)
        assert isinstance(result, NotLinearGaussian)
    # 0 * sin(x) is 0 everywhere, but sin of the latent is still not affine.
    result = linear_gaussian(lambda x, i: 0.0 * jnp.sin(x), None, X, INPUTS)
    assert isinstance(result, NotLinearGaussian)


def test_coefficients_are_traced_under_jit_and_vmap_over_time() -> None:
    # Time-varying inputs: one coefficient matrix per step, under jit and vmap.
    us = jnp.stack([U, 2.0 * U, -U, 0.5 * U])

    def coefficients(u_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        result = linear_gaussian(lambda x, u: PHI * u[:, None] @ x + u, None, X, u_t)
        assert isinstance(result, LinearGaussian)
        return result.matrix, result.offset

    matrices, offsets = jax.jit(jax.vmap(coefficients))(us)
    for t in range(4):
        np.testing.assert_allclose(
            matrices[t], np.asarray(PHI) * np.asarray(us[t])[:, None], rtol=1e-6
        )
        np.testing.assert_allclose(offsets[t], us[t], rtol=1e-6)


def test_coefficients_are_differentiable_in_the_inputs() -> None:
    def loss(u: jax.Array) -> jax.Array:
        result = linear_gaussian(lambda x, u: u[0] ** 2 * x + jnp.sin(u), None, X, u)
        assert isinstance(result, LinearGaussian)
        return jnp.sum(result.matrix) + jnp.sum(result.offset)

    grad = jax.jit(jax.grad(loss))(U)
    expected = np.cos(np.asarray(U)) + np.array([3 * 2 * float(U[0]), 0, 0])
    np.testing.assert_allclose(grad, expected, rtol=1e-5)


def test_inputs_closed_over_from_an_outer_trace_are_coefficients() -> None:
    def loss(scale: jax.Array) -> jax.Array:
        result = linear_gaussian(lambda x, i: scale * x, None, X, ())
        assert isinstance(result, LinearGaussian)
        return jnp.trace(result.matrix)

    np.testing.assert_allclose(jax.grad(loss)(jnp.float32(2.0)), 3.0)


def test_a_mean_of_several_arrays_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="one array"):
        linear_gaussian(lambda x, i: (x, x), None, X, INPUTS)  # type: ignore[arg-type, return-value]
