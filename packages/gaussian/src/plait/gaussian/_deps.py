"""Which inputs of a traced computation each of its outputs depends on (a jaxpr walk).

Every input gets a bit mask (an ``int``); a variable's mask is the union of the masks
of the inputs it is computed from. Calls (``jit``, custom derivatives, ``checkpoint``)
and the branches of ``cond`` are walked the same way; a loop (``scan``, ``while``) is
taken to mix all its operands (a sound over-approximation: it can only make an output
look more dependent than it is).
"""

from collections.abc import Sequence
from typing import Any

from jax.extend.core import ClosedJaxpr, Jaxpr, JaxprEqn, Literal, Var

__all__ = ["dependencies"]

_CALL_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


def _union(masks: Sequence[int]) -> int:
    out = 0
    for m in masks:
        out |= m
    return out


def _eqn_masks(eqn: JaxprEqn, masks: list[int]) -> list[int]:
    n_out = len(eqn.outvars)
    if not any(masks):
        return [0] * n_out
    name = eqn.primitive.name
    if name == "cond":
        index, operands = masks[0], masks[1:]
        outs = [_walk(branch, operands) for branch in eqn.params["branches"]]
        return [index | _union(column) for column in zip(*outs, strict=True)]
    if name not in ("scan", "while"):
        for param in _CALL_PARAMS:
            inner = eqn.params.get(param)
            if isinstance(inner, ClosedJaxpr | Jaxpr):
                return _walk(inner, masks)[:n_out]
    return [_union(masks)] * n_out


def _walk(jaxpr: ClosedJaxpr | Jaxpr, in_masks: Sequence[int]) -> list[int]:
    inner = jaxpr.jaxpr if isinstance(jaxpr, ClosedJaxpr) else jaxpr
    env: dict[Var, int] = {v: 0 for v in inner.constvars}
    env.update(zip(inner.invars, in_masks, strict=True))

    def read(v: Any) -> int:
        return 0 if isinstance(v, Literal) else env[v]

    for eqn in inner.eqns:
        for v, m in zip(eqn.outvars, _eqn_masks(eqn, [read(v) for v in eqn.invars]), strict=True):
            env[v] = m
    return [read(v) for v in inner.outvars]


def dependencies(jaxpr: ClosedJaxpr | Jaxpr, in_masks: Sequence[int]) -> list[int]:
    """The union of the masks of the inputs each output of ``jaxpr`` depends on.

    Args:
        jaxpr: the traced computation.
        in_masks: one bit mask per input (flat, in the jaxpr's order).

    Returns:
        One mask per output.

    Example:
        >>> import jax
        >>> closed = jax.make_jaxpr(lambda a, b, c: (a * b, c + 1.0, 2.0))(1.0, 2.0, 3.0)
        >>> dependencies(closed, [1, 2, 4])
        [3, 4, 0]
    """
    return _walk(jaxpr, in_masks)
