"""A ``lax.while_loop`` that sums per-iteration log densities, differentiable in reverse.

``lax.while_loop`` has no reverse-mode derivative (its trip count is unknown, so nothing
bounds the residuals to keep), but NUTS and SVI need ``grad`` of the log density. The sum
is therefore a ``jax.custom_vjp`` whose backward pass runs the loop again:

* when the carry depends on no input being differentiated (the loop walks over data:
  counters, indices, states read from the data), the gradient is the sum over iterations
  of each iteration's own vector-Jacobian product, accumulated in the same loop: O(1)
  times the forward cost;
* otherwise it is assembled from forward-mode products (``jax.jvp`` through the loop, one
  per scalar being differentiated, batched with ``vmap``).

Both are exact. The loop itself is two jaxprs traced once: ``cond(i, *carry) -> bool`` and
``body(i, [key,] *carry) -> (*new_carry, *log_densities)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, random
from jax.custom_derivatives import SymbolicZero
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal, jaxpr_as_fun

__all__ = ["Program", "accumulate", "depends_on"]


class Program(NamedTuple):
    """The two traced functions of a loop and what their inputs and outputs are.

    Fields:
        cond: ``(i, *carry) -> bool``.
        body: ``(i, [key,] *carry) -> (*new_carry, *log_densities)``.
        n_carry: the number of carry leaves.
        keyed: the body takes a per-iteration key.
        totals: the shapes and dtypes of the log densities summed over iterations.
    """

    cond: Jaxpr
    body: Jaxpr
    n_carry: int
    keyed: bool
    totals: tuple[jax.ShapeDtypeStruct, ...]


def depends_on(jaxpr: Jaxpr, inputs: set[int]) -> list[bool]:
    """Whether each output of ``jaxpr`` may depend on the inputs at positions ``inputs``
    (constants first, then arguments; conservative: an equation with a dependent input
    makes all its outputs dependent).

    Example:
        >>> import jax
        >>> closed = jax.make_jaxpr(lambda a, b: (a + 1.0, b * 2.0))(1.0, 2.0)
        >>> depends_on(closed.jaxpr, {0})
        [True, False]
    """
    invars = [*jaxpr.constvars, *jaxpr.invars]
    dependent = {invars[k] for k in inputs}
    for eqn in jaxpr.eqns:
        if any(not isinstance(v, Literal) and v in dependent for v in eqn.invars):
            dependent.update(eqn.outvars)
    return [not isinstance(v, Literal) and v in dependent for v in jaxpr.outvars]


def _functions(program: Program, cond_consts: Sequence[Any], body_consts: Sequence[Any]) -> Any:
    cond = jaxpr_as_fun(ClosedJaxpr(program.cond, list(cond_consts)))
    body = jaxpr_as_fun(ClosedJaxpr(program.body, list(body_consts)))
    return cond, body


def _forward(
    program: Program,
    cond_consts: Sequence[Any],
    body_consts: Sequence[Any],
    start: Any,
    key: Any,
    init: Sequence[Any],
) -> tuple[list[Any], list[Any]]:
    cond, body = _functions(program, cond_consts, body_consts)
    n = program.n_carry

    def keep_going(state: Any) -> Any:
        i, _, carry, _ = state
        return cond(i, *carry)[0]

    def step(state: Any) -> Any:
        i, k, carry, totals = state
        args = [i]
        if program.keyed:
            k, sub = random.split(k)
            args.append(sub)
        outs = body(*args, *carry)
        totals = [t + lp for t, lp in zip(totals, outs[n:], strict=True)]
        return i + 1, k, list(outs[:n]), totals

    zeros = [jnp.zeros(a.shape, a.dtype) for a in program.totals]
    state = (jnp.asarray(start, jnp.int32), key, list(init), zeros)
    _, _, carry, totals = lax.while_loop(keep_going, step, state)
    return carry, totals


def _value(x: Any) -> Any:
    return x.value if hasattr(x, "perturbed") else x


def _perturbed(x: Any) -> bool:
    return bool(getattr(x, "perturbed", False))


def _dense(ct: Any, like: jax.ShapeDtypeStruct) -> Any:
    if isinstance(ct, SymbolicZero) or ct is None:
        return jnp.zeros(like.shape, like.dtype)
    return ct


def accumulate(
    program: Program,
    cond_consts: Sequence[Any],
    body_consts: Sequence[Any],
    start: Any,
    key: Any,
    init: Sequence[Any],
) -> tuple[list[Any], list[Any]]:
    """Run the loop from iteration ``start``; the final carry and the summed log
    densities. Differentiable in reverse mode (see the module docstring).

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> cond = jax.make_jaxpr(lambda i, c: i < 3)(0, 0.0)
        >>> body = jax.make_jaxpr(lambda i, c, w: (c + 1.0, w * c))(0, 0.0, 2.0)
        >>> avals = (jax.ShapeDtypeStruct((), jnp.float32),)
        >>> program = Program(cond.jaxpr, body.jaxpr, 1, False, avals)
        >>> def total(w):  # w * (0 + 1 + 2), w closed over as the body's third input
        ...     body_w = jax.make_jaxpr(lambda i, c: (c + 1.0, w * c))(0, 0.0)
        ...     p = program._replace(body=body_w.jaxpr)
        ...     return accumulate(p, cond.consts, body_w.consts, 0, None, [0.0])[1][0]
        >>> float(total(2.0)), float(jax.grad(total)(2.0))
        (6.0, 3.0)
    """
    n_cond, n_body = len(cond_consts), len(body_consts)
    strategy: dict[str, Any] = {}

    @jax.custom_vjp
    def run(cc: list[Any], bc: list[Any], s: Any, k: Any, c: list[Any]) -> Any:
        return _forward(program, cc, bc, s, k, c)

    def fwd(cc: list[Any], bc: list[Any], s: Any, k: Any, c: list[Any]) -> Any:
        flags = [_perturbed(x) for x in (*cc, *bc, s, *jax.tree_util.tree_leaves(k), *c)]
        values = (
            [_value(x) for x in cc],
            [_value(x) for x in bc],
            _value(s),
            jax.tree_util.tree_map(_value, k, is_leaf=lambda x: hasattr(x, "perturbed")),
            [_value(x) for x in c],
        )
        strategy["flags"] = flags
        strategy["per_iteration"] = _carry_is_unperturbed(
            program, n_cond, [_perturbed(x) for x in bc], [_perturbed(x) for x in c]
        )
        return _forward(program, *values), values

    def bwd(values: Any, cts: Any) -> Any:
        cc, bc, s, k, c = values
        g_carry, g_totals = cts
        if strategy["per_iteration"]:
            grads_bc = _per_iteration_grads(
                program, cc, bc, s, k, c, g_totals, strategy["flags"][n_cond : n_cond + n_body]
            )
            return [None] * len(cc), grads_bc, None, None, [None] * len(c)
        return _forward_mode_grads(program, values, strategy["flags"], g_carry, g_totals)

    run.defvjp(fwd, bwd, symbolic_zeros=True)
    carry, totals = run(list(cond_consts), list(body_consts), start, key, list(init))
    return list(carry), list(totals)


def _carry_is_unperturbed(
    program: Program, n_cond: int, body_flags: list[bool], init_flags: list[bool]
) -> bool:
    """Whether no carry leaf can depend on a perturbed input (the per-iteration rule)."""
    if any(init_flags):
        return False
    n = program.n_carry
    n_consts = len(body_flags)
    first_carry = n_consts + 1 + (1 if program.keyed else 0)
    tainted: set[int] = set()
    while True:
        sources = {j for j, p in enumerate(body_flags) if p} | {first_carry + t for t in tainted}
        deps = depends_on(program.body, sources)[:n]
        new = {j for j, d in enumerate(deps) if d}
        if new <= tainted:
            return not tainted
        tainted |= new


def _per_iteration_grads(
    program: Program,
    cond_consts: list[Any],
    body_consts: list[Any],
    start: Any,
    key: Any,
    init: list[Any],
    g_totals: list[Any],
    body_flags: list[bool],
) -> list[Any]:
    cond, _ = _functions(program, cond_consts, body_consts)
    chosen = [j for j, p in enumerate(body_flags) if p]
    n = program.n_carry
    cts = [_dense(g, a) for g, a in zip(g_totals, program.totals, strict=True)]

    def keep_going(state: Any) -> Any:
        i, _, carry, _ = state
        return cond(i, *carry)[0]

    def step(state: Any) -> Any:
        i, k, carry, acc = state
        args = [i]
        if program.keyed:
            k, sub = random.split(k)
            args.append(sub)

        def lps_of(picked: list[Any]) -> Any:
            consts = list(body_consts)
            for j, v in zip(chosen, picked, strict=True):
                consts[j] = v
            outs = jaxpr_as_fun(ClosedJaxpr(program.body, consts))(*args, *carry)
            return list(outs[n:]), list(outs[:n])

        _, vjp, new_carry = jax.vjp(lps_of, [body_consts[j] for j in chosen], has_aux=True)
        (grads,) = vjp(cts)
        return i + 1, k, new_carry, [a + g for a, g in zip(acc, grads, strict=True)]

    zeros = [jnp.zeros(jnp.shape(body_consts[j]), jnp.result_type(body_consts[j])) for j in chosen]
    state = (jnp.asarray(start, jnp.int32), key, list(init), zeros)
    *_, acc = lax.while_loop(keep_going, step, state)
    out: list[Any] = [None] * len(body_consts)
    for j, g in zip(chosen, acc, strict=True):
        out[j] = g
    return out


def _forward_mode_grads(
    program: Program, values: Any, flags: list[bool], g_carry: list[Any], g_totals: list[Any]
) -> Any:
    cc, bc, s, k, c = values
    key_leaves, key_def = jax.tree_util.tree_flatten(k)
    flat = [*cc, *bc, s, *key_leaves, *c]
    chosen = [j for j, p in enumerate(flags) if p]
    primals = [flat[j] for j in chosen]
    sizes = [int(np.prod(jnp.shape(p))) for p in primals]

    def run(picked: list[Any]) -> Any:
        full = list(flat)
        for j, v in zip(chosen, picked, strict=True):
            full[j] = v
        a, b = len(cc), len(cc) + len(bc)
        key = jax.tree_util.tree_unflatten(key_def, full[b + 1 : b + 1 + len(key_leaves)])
        carry, totals = _forward(
            program, full[:a], full[a:b], full[b], key, full[b + 1 + len(key_leaves) :]
        )
        return carry, totals

    def tangent(basis: Any) -> Any:
        pieces, offset = [], 0
        for p, size in zip(primals, sizes, strict=True):
            pieces.append(
                jnp.reshape(basis[offset : offset + size], jnp.shape(p)).astype(jnp.result_type(p))
            )
            offset += size
        return jax.jvp(run, (primals,), (pieces,))[1]

    dim = sum(sizes)
    carry_t, totals_t = jax.vmap(tangent)(jnp.eye(dim))
    grad = jnp.zeros((dim,))
    for t, g in zip([*carry_t, *totals_t], [*g_carry, *g_totals], strict=True):
        if isinstance(g, SymbolicZero) or g is None or t.dtype == jax.dtypes.float0:
            continue
        grad = grad + jnp.tensordot(t, g, axes=jnp.ndim(g)).astype(grad.dtype)
    out: list[Any] = [None] * len(flat)
    offset = 0
    for j, p, size in zip(chosen, primals, sizes, strict=True):
        out[j] = jnp.reshape(grad[offset : offset + size], jnp.shape(p)).astype(jnp.result_type(p))
        offset += size
    a, b = len(cc), len(cc) + len(bc)
    n_key = len(key_leaves)
    key_out = None if k is None else jax.tree_util.tree_unflatten(key_def, [None] * n_key)
    return out[:a], out[a:b], out[b], key_out, out[b + 1 + n_key :]
