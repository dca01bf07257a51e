"""The vectorised steps of an enumerated scan: the traced passes and their evaluation.

Pass ``k`` (``k = h, ..., 1``) is the body traced in the markov frame of step ``t - k``;
pass 0 is the step ``t`` itself. Evaluated for every ``t`` at once, pass ``k`` turns the
carry pass ``k + 1`` produced into the carry going into step ``t - k + 1``; pass ``h``
starts from a placeholder, which is exact when no carry part remembers more than ``h - 1``
steps back (checked on the jaxpr, :func:`carry_depths`). Carry parts that remember forever
(a counter) cannot carry enumerated values; they are computed first by a ``lax.scan`` of
the body that XLA reduces to them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array, lax
from jax.extend.core import ClosedJaxpr, jaxpr_as_fun

from plait import Trace
from plait.control_flow import ControlFlowTypeError
from plait.control_flow.plugin_api import SiteSkeleton, StepResult, split_trace
from plait.enum._deps import depends_on
from plait.enum._keys import ENUM_DIM
from plait.enum._sites import plates_of, promote_fn, site_log_factor

__all__ = [
    "StepPlan",
    "Traced",
    "carry_closure",
    "carry_depths",
    "enum_dims_of",
    "evaluate",
    "step_aval",
    "trace_pass",
]

RunBody = Callable[[Any, Any, Any, Any, str], StepResult]
"""Runs the body as one step: ``(carry, x, index, key, prefix) -> StepResult``."""


class Traced:
    """One traced body step: its jaxpr (and as a function), output structure, and what the
    trace left behind (the step's trace and, for the main pass, its sites' skeletons)."""

    def __init__(
        self,
        closed: ClosedJaxpr,
        out_tree: Any,
        trace: Trace,
        skeletons: dict[str, SiteSkeleton],
    ) -> None:
        self.closed = closed
        self.fun = jaxpr_as_fun(closed)
        self.out_tree = out_tree
        self.trace = trace
        self.skeletons = skeletons


def step_aval(x: Any) -> jax.ShapeDtypeStruct:
    """The abstract value of one time slice of ``x`` (no slice is taken)."""
    return jax.ShapeDtypeStruct(jnp.shape(x)[1:], jnp.result_type(x))  # type: ignore[no-untyped-call]


def trace_pass(
    run_body: RunBody,
    scan_name: str,
    carry_avals: Any,
    x_avals: Any,
    key_aval: Any,
    prefix: str,
    main: bool,
) -> Traced:
    """Trace one pass of the body. The main pass returns, besides the new carry, the
    step's output, every sample site's log-factor, the enumerated sites' supports and the
    sites' arrays (stacked later); a carry pass returns the new carry only."""
    found: dict[str, Any] = {"trace": {}, "skeletons": {}}
    carry_def = jax.tree_util.tree_structure(carry_avals)

    def step(carry: Any, x: Any, index: Any, key: Any) -> Any:
        result = run_body(carry, x, index, key, prefix)
        new = result.carry
        if str(jax.tree_util.tree_structure(new)) != str(carry_def):
            raise ControlFlowTypeError(
                f"scan '{scan_name}': the body returns a carry with structure "
                f"{jax.tree_util.tree_structure(new)}, but the carry going in has structure "
                f"{carry_def}. Return a carry of the same structure as init."
            )
        new = jax.tree_util.tree_map(lambda a, b: lax.convert_element_type(b, a.dtype), carry, new)
        found["trace"] = result.trace
        if not main:
            return new
        plates, _ = plates_of(result.trace)
        lps: dict[str, Array] = {}
        supports: dict[str, Array] = {}
        for name, msg in result.trace.items():
            if msg.type != "sample":
                continue
            lps[name] = site_log_factor(msg, plates)
            if ENUM_DIM in msg.stash:
                supports[name] = msg.value
        for msg in result.trace.values():
            if msg.type == "sample":
                msg.fn = promote_fn(msg.fn, msg.value)
        skeletons, payloads = split_trace(result.trace)
        found["skeletons"] = skeletons
        return new, result.output, lps, supports, payloads

    index_aval = jax.ShapeDtypeStruct((), jnp.int32)  # type: ignore[no-untyped-call]
    closed, out_shape = jax.make_jaxpr(step, return_shape=True)(
        carry_avals, x_avals, index_aval, key_aval
    )
    return Traced(
        closed, jax.tree_util.tree_structure(out_shape), found["trace"], found["skeletons"]
    )


def call_batched(
    traced: Traced, inputs: Sequence[Any], batched: Sequence[bool]
) -> tuple[list[Any], list[bool]]:
    """Evaluate a traced step for every time at once: ``vmap`` over the batched inputs;
    outputs that do not depend on them are computed once (not batched)."""
    flags = depends_on(traced.closed, batched)
    if not any(batched):
        return list(traced.fun(*inputs)), flags
    positions = [i for i, b in enumerate(batched) if b]

    def g(*values: Any) -> tuple[Any, ...]:
        full = list(inputs)
        for i, v in zip(positions, values, strict=True):
            full[i] = v
        return tuple(traced.fun(*full))

    out_axes = tuple(0 if flag else None for flag in flags)
    outs = jax.vmap(g, in_axes=0, out_axes=out_axes)(*(inputs[i] for i in positions))
    return list(outs), flags


def carry_depths(deps: list[frozenset[int]]) -> list[float]:
    """How many steps back each carry part remembers (``inf`` on a cycle), from which
    carry parts each new carry part depends on."""
    memo: dict[int, float] = {}

    def depth(j: int, path: frozenset[int]) -> float:
        if j in memo:
            return memo[j]
        if j in path:
            return float("inf")
        inner = list(deps[j])
        d = 0.0 if not inner else 1 + max(depth(i, path | {j}) for i in inner)
        memo[j] = d
        return d

    return [depth(j, frozenset()) for j in range(len(deps))]


def carry_closure(start: set[int], deps: list[frozenset[int]]) -> frozenset[int]:
    """``start`` and every carry part it depends on, transitively."""
    found = set(start)
    frontier = list(start)
    while frontier:
        j = frontier.pop()
        for i in deps[j]:
            if i not in found:
                found.add(i)
                frontier.append(i)
    return frozenset(found)


def enum_dims_of(shape: tuple[int, ...], dims: set[int]) -> list[int]:
    """The dims of an array of ``shape`` (negative) of size > 1 that are in ``dims``."""
    return [k - len(shape) for k, n in enumerate(shape) if n != 1 and k - len(shape) in dims]


class StepPlan(NamedTuple):
    """How the vectorised steps are evaluated.

    Fields:
        passes: the traced passes by lag (``0``: the step itself).
        n_carry: the number of carry leaves.
        history: the scan's history ``h``.
        unrolled: the number of unrolled first steps ``u``.
        length: the number of steps.
        n_pass: the number of carry passes.
        sequential: the carry parts computed by a sequential ``lax.scan``.
        start: the first logical step the sequential scan starts from.
    """

    passes: dict[int, Traced]
    n_carry: int
    history: int
    unrolled: int
    length: int
    n_pass: int
    sequential: frozenset[int]
    start: int


def evaluate(
    plan: StepPlan,
    flags_out: list[list[bool]],
    x_leaves: list[Any],
    order_all: Any,
    key_leaves: list[Any],
    dummy: list[Any],
    first: list[Any],
    init_leaves: list[Any],
) -> tuple[list[Any], dict[int, Any]]:
    """Every array computation of the vectorised steps: the main pass's outputs for all
    vectorised steps (``flags_out`` receives which of them have the time axis), and the
    final values of the sequential carry parts."""
    passes, n_c = plan.passes, plan.n_carry
    h, u, length, start = plan.history, plan.unrolled, plan.length, plan.start
    seq = plan.sequential
    main = passes[0]

    def inputs_at(lo: int, hi: int) -> tuple[list[Any], list[Any], list[Any]]:
        xl = [a[lo:hi] for a in x_leaves]
        idx = [order_all[lo:hi]]
        kl = [k[lo:hi] for k in key_leaves]
        return xl, idx, kl

    # Sequential parts: a lax.scan of the step reduced (by XLA) to them.
    seq_in: dict[int, Any] = {}
    seq_final: dict[int, Any] = {}
    if seq:
        main_in_avals = main.closed.in_avals[:n_c]
        fill = [jnp.zeros(a.shape, a.dtype) for a in main_in_avals]  # type: ignore[attr-defined]
        order = sorted(seq)

        def body(
            c: list[Any], xs_t: tuple[list[Any], list[Any], list[Any]]
        ) -> tuple[list[Any], list[Any]]:
            xl, idx, kl = xs_t
            full = list(fill)
            for j, v in zip(order, c, strict=True):
                full[j] = v
            out = main.fun(*full, *xl, *idx, *kl)
            return [out[j] for j in order], c

        xl, idx, kl = inputs_at(start, length)
        init_seq = [jnp.asarray(first[j], main_in_avals[j].dtype) for j in order]  # type: ignore[attr-defined]
        last, stacked = lax.scan(body, init_seq, (xl, idx, kl))
        for j, a, s_ in zip(order, last, stacked, strict=True):
            seq_final[j] = a
            seq_in[j] = s_  # inputs of logical steps start, ..., length - 1

    def seq_slice(j: int, lo: int, hi: int) -> Any:
        return seq_in[j][lo - start : hi - start]

    # The carry passes, h .. 1, then the step.
    carry_vals: list[Any] = list(dummy)
    carry_flags = [False] * n_c
    if h == 0 and n_c and not seq:
        xl, idx, kl = inputs_at(0, length - 1)
        ins = [*dummy, *xl, *idx, *kl]
        outs, flags = call_batched(passes[1], ins, [False] * n_c + [True] * (len(ins) - n_c))
        carry_vals, carry_flags = [], []
        for j in range(n_c):
            a = outs[j]
            if not flags[j]:
                a = jnp.broadcast_to(a, (length - 1, *jnp.shape(a)))
            carry_vals.append(jnp.concatenate([jnp.asarray(init_leaves[j], a.dtype)[None], a]))
            carry_flags.append(True)
    elif h > 0:
        for k in range(plan.n_pass, 0, -1):
            lo, hi = u - k, length - k
            for j in seq:
                carry_vals[j], carry_flags[j] = seq_slice(j, lo, hi), True
            xl, idx, kl = inputs_at(lo, hi)
            ins = [*carry_vals, *xl, *idx, *kl]
            outs, flags = call_batched(passes[k], ins, carry_flags + [True] * (len(ins) - n_c))
            carry_vals, carry_flags = outs[:n_c], flags[:n_c]
    for j in seq:
        carry_vals[j], carry_flags[j] = seq_slice(j, u, length), True
    xl, idx, kl = inputs_at(u, length)
    ins = [*carry_vals, *xl, *idx, *kl]
    outs, flags = call_batched(main, ins, carry_flags + [True] * (len(ins) - n_c))
    flags_out.append(flags)
    return outs, seq_final
