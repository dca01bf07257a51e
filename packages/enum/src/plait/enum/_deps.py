"""Which outputs of a traced step depend on which inputs (a jaxpr data-flow pass).

An equation that calls one sub-jaxpr with its own inputs and outputs (``jit``, a
``custom_jvp``/``custom_vjp`` function: most of ``jax.numpy``) is looked into; any other
equation with a dependent input makes every one of its outputs dependent (a ``cond``, a
``scan``), so "independent" is always true.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jax.extend.core import ClosedJaxpr, Jaxpr, Literal, jaxprs_in_params

__all__ = ["dependencies", "depends_on"]


def _inner(eqn: Any) -> Jaxpr | None:
    """The one sub-jaxpr an equation calls with its inputs and outputs, if any."""
    found = list(jaxprs_in_params(eqn.params))
    if len(found) != 1:
        return None
    inner = found[0]
    jaxpr = inner.jaxpr if isinstance(inner, ClosedJaxpr) else inner
    if len(jaxpr.invars) != len(eqn.invars) or len(jaxpr.outvars) != len(eqn.outvars):
        return None
    return jaxpr


def _propagate(jaxpr: Jaxpr, sources: list[frozenset[int]]) -> list[frozenset[int]]:
    empty: frozenset[int] = frozenset()
    deps: dict[Any, frozenset[int]] = {}
    for v, found in zip(jaxpr.invars, sources, strict=True):
        if found:
            deps[v] = found
    for eqn in jaxpr.eqns:
        ins = [empty if isinstance(v, Literal) else deps.get(v, empty) for v in eqn.invars]
        if not any(ins):
            continue
        inner = _inner(eqn)
        if inner is not None:
            outs = _propagate(inner, ins)
        else:
            outs = [empty.union(*ins)] * len(eqn.outvars)
        for v, found in zip(eqn.outvars, outs, strict=True):
            if found:
                deps[v] = found
    return [empty if isinstance(v, Literal) else deps.get(v, empty) for v in jaxpr.outvars]


def dependencies(closed: ClosedJaxpr, inputs: Sequence[int]) -> list[frozenset[int]]:
    """For each output: the positions among ``inputs`` (input indices) it depends on.

    Example:
        >>> import jax
        >>> closed = jax.make_jaxpr(lambda a, b: (a + b, b))(1.0, 2.0)
        >>> dependencies(closed, [0, 1])
        [frozenset({0, 1}), frozenset({1})]
    """
    sources: list[frozenset[int]] = [frozenset()] * len(closed.jaxpr.invars)
    for k, i in enumerate(inputs):
        sources[i] = frozenset({k})
    return _propagate(closed.jaxpr, sources)


def depends_on(closed: ClosedJaxpr, flags: Sequence[bool]) -> list[bool]:
    """For each output: whether it depends on any input flagged ``True``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> closed = jax.make_jaxpr(lambda a, b: (jnp.where(b > 0, b, 0.0), a * 2.0, 3.0))(1.0, 2.0)
        >>> depends_on(closed, [True, False])
        [False, True, False]
    """
    inputs = [i for i, flag in enumerate(flags) if flag]
    return [bool(found) for found in dependencies(closed, inputs)]
