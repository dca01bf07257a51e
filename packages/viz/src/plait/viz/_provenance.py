"""Which named inputs each output of a function depends on, read from its jaxpr.

:func:`eval_provenance` traces ``fn(**inputs)`` with :func:`jax.make_jaxpr` (no array is
computed) and walks the jaxpr, giving every variable the set of input names it may depend
on (Wingate et al. 2011, "Nonstandard interpretations of probabilistic programs"; NumPyro's
``eval_provenance``). Control flow is read through, not lumped together: the branches of a
``cond`` are unioned, a ``scan``'s or ``while``'s carry is iterated to a fixed point (so an
output of a loop depends on what its steps read, not on every input of the loop), and
calls (``jit``, ``custom_jvp``/``custom_vjp``, ``checkpoint``) are entered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal

__all__ = ["eval_provenance", "jaxpr_provenance"]

Provenance = frozenset[str]
_NONE: Provenance = frozenset()


def _open(jaxpr: Any) -> tuple[Jaxpr, int]:
    """The open jaxpr of a ``Jaxpr`` or ``ClosedJaxpr`` param, and its number of consts
    that are not inputs (those of a ``ClosedJaxpr``: known values, no provenance)."""
    if isinstance(jaxpr, ClosedJaxpr):
        return jaxpr.jaxpr, len(jaxpr.jaxpr.constvars)
    return jaxpr, len(jaxpr.constvars)


def jaxpr_provenance(jaxpr: Any, inputs: Sequence[Provenance]) -> list[Provenance]:
    """The provenance of each output of ``jaxpr`` (a ``Jaxpr`` or ``ClosedJaxpr``) given
    that of each of its inputs (its constants have none).

    Example:
        >>> import jax
        >>> closed = jax.make_jaxpr(lambda a, b: (a + 1.0, a * b))(1.0, 2.0)
        >>> [sorted(p) for p in jaxpr_provenance(closed, [frozenset({"a"}), frozenset({"b"})])]
        [['a'], ['a', 'b']]
    """
    open_jaxpr, _ = _open(jaxpr)
    env: dict[Any, Provenance] = {}

    def read(v: Any) -> Provenance:
        if isinstance(v, Literal):
            return _NONE
        return env.get(v, _NONE)

    for var, prov in zip(open_jaxpr.invars, inputs, strict=True):
        env[var] = prov
    for eqn in open_jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        rule = _RULES.get(eqn.primitive.name, _default)
        outs = rule(eqn.params, ins, len(eqn.outvars))
        for var, prov in zip(eqn.outvars, outs, strict=True):
            env[var] = read(var) | prov
    return [read(v) for v in open_jaxpr.outvars]


def _union(provs: Sequence[Provenance]) -> Provenance:
    out: set[str] = set()
    for p in provs:
        out |= p
    return frozenset(out)


def _default(params: dict[str, Any], ins: list[Provenance], n_out: int) -> list[Provenance]:
    # An unknown primitive: every output depends on every input (sound, coarse).
    return [_union(ins)] * n_out


def _call(key: str) -> Callable[[dict[str, Any], list[Provenance], int], list[Provenance]]:
    def rule(params: dict[str, Any], ins: list[Provenance], n_out: int) -> list[Provenance]:
        inner = params.get(key)
        if inner is None:
            return _default(params, ins, n_out)
        open_jaxpr, _ = _open(inner)
        if len(open_jaxpr.invars) != len(ins):
            return _default(params, ins, n_out)
        return jaxpr_provenance(inner, ins)

    return rule


def _cond(params: dict[str, Any], ins: list[Provenance], n_out: int) -> list[Provenance]:
    index, operands = ins[0], ins[1:]
    outs = [index] * n_out
    for branch in params["branches"]:
        branch_outs = jaxpr_provenance(branch, operands)
        outs = [a | b for a, b in zip(outs, branch_outs, strict=True)]
    return outs


def _scan(params: dict[str, Any], ins: list[Provenance], n_out: int) -> list[Provenance]:
    n_consts, n_carry = params["num_consts"], params["num_carry"]
    consts, carry, xs = (
        ins[:n_consts],
        ins[n_consts : n_consts + n_carry],
        ins[n_consts + n_carry :],
    )
    body = params["jaxpr"]
    while True:
        outs = jaxpr_provenance(body, [*consts, *carry, *xs])
        new_carry = [a | b for a, b in zip(carry, outs[:n_carry], strict=True)]
        if new_carry == carry:
            return [*carry, *outs[n_carry:]]
        carry = new_carry


def _while(params: dict[str, Any], ins: list[Provenance], n_out: int) -> list[Provenance]:
    n_cond, n_body = params["cond_nconsts"], params["body_nconsts"]
    cond_consts, body_consts = ins[:n_cond], ins[n_cond : n_cond + n_body]
    carry = ins[n_cond + n_body :]
    while True:
        outs = jaxpr_provenance(params["body_jaxpr"], [*body_consts, *carry])
        new_carry = [a | b for a, b in zip(carry, outs, strict=True)]
        if new_carry == carry:
            break
        carry = new_carry
    # How many iterations run depends on the condition: every output depends on it.
    (trips,) = jaxpr_provenance(params["cond_jaxpr"], [*cond_consts, *carry])
    return [c | trips for c in carry]


_RULES: dict[str, Callable[[dict[str, Any], list[Provenance], int], list[Provenance]]] = {
    "pjit": _call("jaxpr"),
    "jit": _call("jaxpr"),
    "closed_call": _call("call_jaxpr"),
    "core_call": _call("call_jaxpr"),
    "custom_jvp_call": _call("call_jaxpr"),
    "custom_vjp_call": _call("call_jaxpr"),
    "custom_vjp_call_jaxpr": _call("fun_jaxpr"),
    "remat2": _call("jaxpr"),
    "checkpoint": _call("jaxpr"),
    "cond": _cond,
    "scan": _scan,
    "while": _while,
}


def eval_provenance(fn: Callable[..., Any], **inputs: Any) -> Any:
    """The provenance of every output leaf of ``fn(**inputs)``: the set of the names of
    ``inputs`` it may depend on (a pytree of ``frozenset``, shaped as the output).

    Example:
        >>> eval_provenance(lambda x, y, z: x + y, x=1.0, y=2.0, z=3.0) == frozenset({"x", "y"})
        True
    """
    names = list(inputs)
    leaves_per_name = [jax.tree_util.tree_leaves(inputs[n]) for n in names]
    flat = [leaf for leaves in leaves_per_name for leaf in leaves]
    structures = [jax.tree_util.tree_structure(inputs[n]) for n in names]
    out_tree: dict[str, Any] = {}

    def run(*leaves: Any) -> list[Any]:
        kwargs: dict[str, Any] = {}
        start = 0
        for name, structure, own in zip(names, structures, leaves_per_name, strict=True):
            count = len(own)
            kwargs[name] = jax.tree_util.tree_unflatten(
                structure, list(leaves[start : start + count])
            )
            start += count
        out = fn(**kwargs)
        out_leaves, out_tree["tree"] = jax.tree_util.tree_flatten(out)
        return out_leaves

    closed = jax.make_jaxpr(run)(*flat)
    provs = [
        frozenset({n}) for n, leaves in zip(names, leaves_per_name, strict=True) for _ in leaves
    ]
    outs = jaxpr_provenance(closed, provs)
    return jax.tree_util.tree_unflatten(out_tree["tree"], outs)
