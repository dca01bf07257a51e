"""Is a step linear-Gaussian? Decided exactly, from the traced computation.

A latent site of a ``scan`` body can be integrated out by a Kalman filter when its
mean is affine in the previous step's latent ``x_prev`` and its scale does not
depend on it. `linear_gaussian` decides both by walking the jaxprs of the mean and
the scale (``jax.make_jaxpr``), never by evaluating them at trial points: every
variable gets a *degree* in ``x_prev`` (0: independent of it, 1: affine in it), or
the operation that made it non-affine. An operation with no latent operand is
always fine (its result has degree 0: ``sin`` of an input is a coefficient); with a
latent operand only affine operations keep degree 1:

- ``add``, ``sub``, ``neg``, ``reduce_sum``, ``cumsum``, ``concatenate``, ``pad``, and
  the structural ones (``reshape``, ``broadcast_in_dim``, ``squeeze``,
  ``expand_dims``, ``transpose``, ``slice``, ``rev``, ``copy``, ``split``,
  float-to-float ``convert_element_type``);
- ``mul`` and ``dot_general`` with at most one latent operand, ``div`` by a
  non-latent, ``integer_pow`` with exponent 1;
- ``select_n``, ``dynamic_slice``, ``dynamic_update_slice``, ``gather`` and
  ``scatter(-add)`` whose predicate or indices are non-latent;
- calls (``jit``, ``custom_jvp_call``, ``custom_vjp_call``, ``checkpoint``, ``cond``
  with a non-latent index), whose inner jaxprs are walked the same way.

Anything else applied to a latent (``sin``, ``exp``, ``max``, ``stop_gradient``, a
comparison, a cast to an integer, a loop) breaks linearity, and is named in the
result. Unused (dead) results never count. Once the mean is known to be affine its
coefficients are exact: ``b = mean(0)`` and ``A = ∂mean/∂x_prev`` by forward-mode
differentiation, traced with the caller's inputs (so valid under ``jit``, ``grad`` and
``vmap``).
"""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.extend.core import ClosedJaxpr, Jaxpr, JaxprEqn, Literal, Var

__all__ = ["LinearGaussian", "NotLinearGaussian", "linear_gaussian", "latent_degrees"]


class LinearGaussian(NamedTuple):
    """A step whose mean is affine in the previous latent and whose scale is not a function of it.

    ``mean_fn(x_prev, inputs) = Σ_leaf matrix[leaf] · x_prev[leaf] + offset``.

    Attributes:
        matrix: ``∂mean/∂x_prev``, a pytree like ``x_prev``; the leaf for an ``x_prev``
            leaf of shape ``s`` has shape ``mean.shape + s``.
        offset: the mean at ``x_prev = 0``.
        scale: ``scale_fn(x_prev, inputs)`` (the same for every ``x_prev``), or None
            without a ``scale_fn``.
    """

    matrix: Any
    offset: jax.Array
    scale: Any


class NotLinearGaussian(NamedTuple):
    """Why a step is not linear-Gaussian.

    Attributes:
        reason: a clause for an error message, e.g. ``"its mean is not affine in the
            previous latent (`sin` of the previous latent)"``.
        primitive: the name of the JAX primitive at fault, e.g. ``"sin"``.
    """

    reason: str
    primitive: str


class _Broken(NamedTuple):
    primitive: str
    detail: str  # "`sin` of the previous latent"


Degree = int | _Broken  # 0: independent of x_prev, 1: affine in it

_STRUCTURAL = frozenset(
    {
        "neg",
        "reshape",
        "broadcast_in_dim",
        "squeeze",
        "expand_dims",
        "transpose",
        "slice",
        "rev",
        "copy",
        "copy_p",
        "reduce_sum",
        "cumsum",
        "reduce_precision",
        "optimization_barrier",
        "split",
    }
)
_SUMS = frozenset({"add", "sub", "add_any", "concatenate", "pad"})
_PRODUCTS = frozenset({"mul", "dot_general"})
_CALL_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")
# Operands that must not depend on the latent, by position (the rest may be affine).
_INDEX_OPERANDS: dict[str, Callable[[int], Sequence[int]]] = {
    "dynamic_slice": lambda n: range(1, n),
    "dynamic_update_slice": lambda n: range(2, n),
    "gather": lambda n: (1,),
    "scatter": lambda n: (1,),
    "scatter-add": lambda n: (1,),
    "scatter_add": lambda n: (1,),
    "select_n": lambda n: (0,),
}


def _of_latent(primitive: str) -> _Broken:
    return _Broken(primitive, f"`{primitive}` of the previous latent")


def _first_broken(degrees: Sequence[Degree]) -> _Broken | None:
    for d in degrees:
        if isinstance(d, _Broken):
            return d
    return None


def _max_degree(degrees: Sequence[Degree]) -> Degree:
    broken = _first_broken(degrees)
    if broken is not None:
        return broken
    return max((_affine(d) for d in degrees), default=0)


def _affine(d: Degree) -> int:
    assert not isinstance(d, _Broken)
    return d


def _eqn_degrees(eqn: JaxprEqn, degrees: list[Degree]) -> list[Degree]:
    """The degrees of an equation's outputs given those of its inputs."""
    name = eqn.primitive.name
    n_out = len(eqn.outvars)
    if all(d == 0 for d in degrees):
        return [0] * n_out
    if name in _INDEX_OPERANDS:
        # A comparison of the latent is already broken, but the clearer message
        # names the selection or the indexing that consumes it; a broken value
        # operand came first and is named instead.
        index = set(_INDEX_OPERANDS[name](len(degrees)))
        earlier = _first_broken([d for i, d in enumerate(degrees) if i not in index])
        if earlier is not None:
            return [earlier] * n_out
        for i in sorted(index):
            if degrees[i] != 0:
                what = "a predicate" if name == "select_n" else "an index"
                return [
                    _Broken(name, f"`{name}` with {what} that depends on the previous latent")
                ] * n_out
        return [_max_degree(degrees)] * n_out
    if name == "cond":
        if degrees[0] != 0:
            return [
                _Broken(name, "`cond` on a predicate that depends on the previous latent")
            ] * n_out
        outs = [_walk(branch, degrees[1:]) for branch in eqn.params["branches"]]
        return [_max_degree(column) for column in zip(*outs, strict=True)]
    if name in ("scan", "while"):
        return [_Broken(name, f"a `{name}` loop over the previous latent")] * n_out
    for param in _CALL_PARAMS:
        inner = eqn.params.get(param)
        if isinstance(inner, ClosedJaxpr | Jaxpr):
            return _walk(inner, degrees)[:n_out]
    broken = _first_broken(degrees)
    if broken is not None:
        return [broken] * n_out
    if name in _STRUCTURAL or name in _SUMS:
        return [_max_degree(degrees)] * n_out
    if name in _PRODUCTS:
        if sum(_affine(d) for d in degrees) > 1:
            return [_Broken(name, f"`{name}` of two terms that depend on the previous latent")]
        return [1]
    if name == "div":
        if degrees[1] != 0:
            return [_Broken(name, "`div` by a term that depends on the previous latent")]
        return [degrees[0]]
    if name == "integer_pow":
        if eqn.params["y"] == 1:
            return [degrees[0]]
        return [_Broken(name, f"`integer_pow` (power {eqn.params['y']}) of the previous latent")]
    if name == "convert_element_type":
        if jnp.issubdtype(eqn.params["new_dtype"], jnp.floating):
            return [degrees[0]]
        return [
            _Broken(
                name, f"`convert_element_type` of the previous latent to {eqn.params['new_dtype']}"
            )
        ]
    return [_of_latent(name)] * n_out


def _walk(jaxpr: ClosedJaxpr | Jaxpr, in_degrees: Sequence[Degree]) -> list[Degree]:
    inner = jaxpr.jaxpr if isinstance(jaxpr, ClosedJaxpr) else jaxpr
    env: dict[Var, Degree] = {v: 0 for v in inner.constvars}
    env.update(zip(inner.invars, in_degrees, strict=True))

    def read(v: Any) -> Degree:
        return 0 if isinstance(v, Literal) else env[v]

    for eqn in inner.eqns:
        outs = _eqn_degrees(eqn, [read(v) for v in eqn.invars])
        for v, d in zip(eqn.outvars, outs, strict=True):
            env[v] = d
    return [read(v) for v in inner.outvars]


def latent_degrees(
    fn: Callable[[Any, Any], Any], x_prev: Any, inputs: Any
) -> tuple[list[Degree], list[str]]:
    """The degree in ``x_prev`` of each output leaf of ``fn(x_prev, inputs)``, and its producer.

    Returns ``(degrees, producers)``: a degree is 0 (independent of ``x_prev``), 1
    (affine in it) or the operation that broke linearity; a producer is the name of
    the primitive whose result the output is (``"input"`` for an argument passed
    through, ``"literal"`` for a constant).
    """
    closed = jax.make_jaxpr(fn)(x_prev, inputs)
    num_latent = len(jax.tree.leaves(x_prev))
    num_inputs = len(jax.tree.leaves(inputs))
    degrees = _walk(closed, [1] * num_latent + [0] * num_inputs)
    producer = {v: eqn.primitive.name for eqn in closed.jaxpr.eqns for v in eqn.outvars}
    producers = [
        "literal" if isinstance(v, Literal) else producer.get(v, "input")
        for v in closed.jaxpr.outvars
    ]
    return degrees, producers


def linear_gaussian(
    mean_fn: Callable[[Any, Any], jax.Array],
    scale_fn: Callable[[Any, Any], Any] | None,
    x_prev: Any,
    inputs: Any,
) -> LinearGaussian | NotLinearGaussian:
    """Whether a step ``N(mean_fn(x_prev, inputs), scale_fn(x_prev, inputs))`` is linear-Gaussian.

    Decided from the jaxprs of ``mean_fn`` and ``scale_fn`` (see the module
    docstring), exactly: no value is probed. ``x_prev`` and ``inputs`` are pytrees
    of arrays (concrete or traced); only their shapes and dtypes are used for the
    decision, and the coefficients are computed from them.

    Args:
        mean_fn: ``(x_prev, inputs) -> mean``, one array.
        scale_fn: ``(x_prev, inputs) -> scale`` (any pytree), or None for a scale that
            is a constant.
        x_prev: the previous latent (a pytree of arrays).
        inputs: everything else the functions read (a pytree of arrays).

    Returns:
        `LinearGaussian(matrix, offset, scale)`, or `NotLinearGaussian(reason,
        primitive)` naming the operation that broke linearity.

    Example:
        >>> import jax.numpy as jnp
        >>> from plait.gaussian._linearity import linear_gaussian
        >>> step = linear_gaussian(lambda x, u: 0.9 * x + u, lambda x, u: jnp.ones(1),
        ...                        jnp.zeros(1), jnp.array([2.0]))
        >>> step.matrix, step.offset
        (Array([[0.9]], dtype=float32), Array([2.], dtype=float32))
        >>> linear_gaussian(lambda x, u: jnp.sin(x), None, jnp.zeros(1), ()).reason
        'its mean is not affine in the previous latent (`sin` of the previous latent)'
    """
    mean_degrees, _ = latent_degrees(mean_fn, x_prev, inputs)
    if len(mean_degrees) != 1:
        raise TypeError(f"mean_fn must return one array; it returned {len(mean_degrees)} leaves.")
    mean_degree = mean_degrees[0]
    if isinstance(mean_degree, _Broken):
        return NotLinearGaussian(
            f"its mean is not affine in the previous latent ({mean_degree.detail})",
            mean_degree.primitive,
        )
    scale = None
    if scale_fn is not None:
        for d, producer in zip(*latent_degrees(scale_fn, x_prev, inputs), strict=True):
            if isinstance(d, _Broken):
                return NotLinearGaussian(
                    f"its scale depends on the previous latent ({d.detail})", d.primitive
                )
            if d != 0:
                how = "is the previous latent" if producer == "input" else f"through `{producer}`"
                return NotLinearGaussian(
                    f"its scale depends on the previous latent ({how})", producer
                )
        scale = scale_fn(x_prev, inputs)
    zero = jax.tree.map(jnp.zeros_like, x_prev)

    def mean_at(x: Any) -> jax.Array:
        return mean_fn(x, inputs)

    offset = mean_at(zero)
    matrix = jax.jacfwd(mean_at)(zero)
    return LinearGaussian(matrix, offset, scale)
