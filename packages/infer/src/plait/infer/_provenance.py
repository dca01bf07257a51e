"""Which inputs each output of a function depends on, read off its jaxpr.

``eval_provenance(fn, **inputs)`` traces ``fn`` with ``jax.make_jaxpr`` (no array work)
and propagates, equation by equation, the set of input names each variable depends on
(Wingate et al. 2011, "Nonstandard interpretations of probabilistic programs"). Calls
(``jit``, ``call``, ``closed_call``) are followed inside; any other primitive's outputs
depend on all of its inputs (``scan``, ``cond`` and ``while`` included), the same rules
as NumPyro's ``numpyro.ops.provenance``, so score-function gradients built on it match.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax.extend.core import Jaxpr, JaxprEqn, Literal
from jax.extend.core.primitives import call_p, closed_call_p, jit_p

__all__ = ["eval_provenance"]

Provenance = frozenset[str]


def eval_provenance(fn: Callable[..., Any], **kwargs: Any) -> Any:
    """The provenance of ``fn(**kwargs)``: its output pytree with each leaf replaced by
    the frozenset of the names in ``kwargs`` it depends on.

    Example:
        >>> xy, z = eval_provenance(lambda x, y, z: (x + y, z * 2), x=1.0, y=2.0, z=3.0)
        >>> sorted(xy), sorted(z)
        (['x', 'y'], ['z'])
    """
    leaves, in_tree = jax.tree.flatten(kwargs)
    out_tree: list[Any] = []

    def flat_fn(*flat: Any) -> list[Any]:
        out = fn(**jax.tree.unflatten(in_tree, flat))
        out_leaves, tree = jax.tree.flatten(out)
        out_tree.append(tree)
        return out_leaves

    closed = jax.make_jaxpr(flat_fn)(*leaves)
    names = jax.tree.leaves({k: jax.tree.map(lambda _, k=k: k, v) for k, v in kwargs.items()})
    inputs = [frozenset({name}) for name in names]
    outputs = _track(closed.jaxpr, inputs)
    return jax.tree.unflatten(out_tree[0], outputs)


def _track(jaxpr: Jaxpr, inputs: Sequence[Provenance]) -> list[Provenance]:
    env: dict[Any, Provenance] = {}

    def read(v: Any) -> Provenance:
        if isinstance(v, Literal):
            return frozenset()
        return env.get(v, frozenset())

    def write(v: Any, p: Provenance) -> None:
        if not isinstance(v, Literal):
            env[v] = read(v) | p

    for var, p in zip(jaxpr.invars, inputs, strict=True):
        write(var, p)
    for eqn in jaxpr.eqns:
        outputs = _rule(eqn, [read(v) for v in eqn.invars])
        for var, p in zip(eqn.outvars, outputs, strict=True):
            write(var, p)
    return [read(v) for v in jaxpr.outvars]


def _rule(eqn: JaxprEqn, inputs: list[Provenance]) -> list[Provenance]:
    if eqn.primitive is call_p:
        return _track(eqn.params["call_jaxpr"], inputs)
    if eqn.primitive is closed_call_p:
        return _track(eqn.params["call_jaxpr"].jaxpr, inputs)
    if eqn.primitive is jit_p:
        return _track(eqn.params["jaxpr"].jaxpr, inputs)
    union: Provenance = frozenset().union(*inputs)
    return [union] * len(eqn.outvars)
