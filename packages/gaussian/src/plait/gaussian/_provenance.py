"""Which elements of a traced computation's outputs are exact copies of input elements.

A carry such as ``(x_t, x_{t-1})`` or ``jnp.concatenate([x_t[None], x_prev[:-1]])`` holds
the step's latent values themselves, moved around but not computed with: the Kalman
state needs each such element once, not as a second, perfectly correlated copy. The walk
gives every input element an id and follows the ids through the operations that only
move elements (reshape, broadcast, transpose, squeeze, slice, concatenate, reverse,
copies and float casts, calls); any other operation makes a fresh value (id ``-1``).
The answer is exact and read from the jaxpr alone, never from values.
"""

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr, JaxprEqn, Literal, Var

__all__ = ["copies"]

Ids = np.ndarray | None  # int64 ids of the same shape as the variable; None: all fresh

_SAME = frozenset({"copy", "copy_p", "reduce_precision", "optimization_barrier"})
_CALL_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


def _fresh(shape: Sequence[int]) -> np.ndarray:
    return np.full(tuple(shape), -1, np.int64)


def _shape(v: Any) -> tuple[int, ...]:
    return tuple(v.aval.shape)


def _eqn_ids(eqn: JaxprEqn, ids: list[Ids]) -> list[Ids]:
    name = eqn.primitive.name
    n_out = len(eqn.outvars)
    if all(i is None for i in ids):
        return [None] * n_out
    params = eqn.params
    if name in _SAME:
        return list(ids[:n_out])
    if name == "convert_element_type":
        ok = jnp.issubdtype(params["new_dtype"], jnp.floating)
        return [ids[0] if ok else None]
    for param in _CALL_PARAMS:
        inner = params.get(param)
        if isinstance(inner, ClosedJaxpr | Jaxpr):
            return _walk(inner, ids)[:n_out]
    first = ids[0]
    if name == "concatenate":
        parts = [
            _fresh(_shape(v)) if i is None else i for v, i in zip(eqn.invars, ids, strict=True)
        ]
        return [np.concatenate(parts, axis=params["dimension"])]
    if first is None:
        return [None] * n_out
    if name == "reshape":
        if params.get("dimensions") is not None:
            return [None]
        return [np.reshape(first, params["new_sizes"])]
    if name == "broadcast_in_dim":
        shape = tuple(params["shape"])
        expanded = np.expand_dims(
            first, [d for d in range(len(shape)) if d not in params["broadcast_dimensions"]]
        )
        return [np.broadcast_to(expanded, shape)]
    if name == "transpose":
        return [np.transpose(first, params["permutation"])]
    if name == "squeeze":
        return [np.squeeze(first, axis=tuple(params["dimensions"]))]
    if name == "rev":
        return [np.flip(first, axis=tuple(params["dimensions"]))]
    if name == "slice":
        strides = params["strides"] or (1,) * first.ndim
        index = tuple(
            slice(s, e, k)
            for s, e, k in zip(
                params["start_indices"], params["limit_indices"], strides, strict=True
            )
        )
        return [first[index]]
    return [None] * n_out


def _walk(jaxpr: ClosedJaxpr | Jaxpr, in_ids: Sequence[Ids]) -> list[Ids]:
    inner = jaxpr.jaxpr if isinstance(jaxpr, ClosedJaxpr) else jaxpr
    env: dict[Var, Ids] = {v: None for v in inner.constvars}
    env.update(zip(inner.invars, in_ids, strict=True))

    def read(v: Any) -> Ids:
        return None if isinstance(v, Literal) else env[v]

    for eqn in inner.eqns:
        for v, i in zip(eqn.outvars, _eqn_ids(eqn, [read(v) for v in eqn.invars]), strict=True):
            env[v] = i
    return [read(v) for v in inner.outvars]


def copies(jaxpr: ClosedJaxpr | Jaxpr, in_ids: Sequence[Ids]) -> list[np.ndarray]:
    """For each output element of ``jaxpr``, the id of the input element it is an exact copy of.

    Args:
        jaxpr: the traced computation.
        in_ids: per input, an int array of its shape holding each element's id (``-1``:
            not tracked), or None for an input not tracked at all.

    Returns:
        Per output, an int array of its shape: the id copied there, or ``-1``.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> step = lambda x, z: (jnp.concatenate([z[None], x[:-1]]), 2.0 * z)
        >>> closed = jax.make_jaxpr(step)(jnp.zeros(3), jnp.zeros(()))
        >>> [ids.tolist() for ids in copies(closed, [np.arange(3), np.array(7)])]
        [[7, 0, 1], -1]
    """
    outs = _walk(jaxpr, in_ids)
    shapes = [_shape(v) for v in (jaxpr.jaxpr if isinstance(jaxpr, ClosedJaxpr) else jaxpr).outvars]
    return [_fresh(s) if i is None else np.asarray(i) for i, s in zip(outs, shapes, strict=True)]
