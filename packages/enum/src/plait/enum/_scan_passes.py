"""The vectorised steps of an enumerated scan: trace the passes, find the carries, vmap.

Pass ``k`` (``k = h, ..., 1``) is the body traced in the markov frame of step ``t - k``;
pass 0 is the step ``t`` itself. Evaluated for every ``t`` at once, pass ``k`` turns the
carry pass ``k + 1`` produced into the carry going into step ``t - k + 1``; pass ``h``
starts from a placeholder, which is exact when no carry part remembers more than ``h - 1``
steps back (checked on the jaxpr). Carry parts that remember forever (a counter) cannot
carry enumerated values; they are computed first by a ``lax.scan`` of the body that XLA
reduces to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from jax import Array, lax
from jax.extend.core import jaxpr_as_fun

from plait import Message
from plait.control_flow import split_trace
from plait.enum._deps import dependencies, depends_on
from plait.enum._enum import ENUM_DIM
from plait.enum._problem import site_log_prob, site_scale
from plait.enum._scan_record import Flagged, finish, plates_of, promote_fn
from plait.errors import PlaitError

if TYPE_CHECKING:
    from plait.enum._scan_enum import _Run

__all__ = ["vectorise"]


class _Traced:
    """One traced body step: its jaxpr (and as a function), output structure, and what the
    trace left behind (the step's trace, the skeletons of its sites)."""

    def __init__(self, closed: Any, out_tree: Any, captured: dict[str, Any]) -> None:
        self.closed = closed
        self.fun = jaxpr_as_fun(closed)
        self.out_tree = out_tree
        self.captured = captured


def _aval_of(a: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(a.shape, a.dtype)  # type: ignore[no-untyped-call]


def _aval(x: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))  # type: ignore[no-untyped-call]


def _step_aval(x: Any) -> jax.ShapeDtypeStruct:
    """The abstract value of one time slice of ``x`` (no slice is taken)."""
    return jax.ShapeDtypeStruct(jnp.shape(x)[1:], jnp.result_type(x))  # type: ignore[no-untyped-call]


def _trace_pass(
    run: _Run, carry_avals: Any, x_avals: Any, key_aval: Any, prefix: str, main: bool
) -> _Traced:
    captured: dict[str, Any] = {}
    carry_def = jax.tree_util.tree_structure(carry_avals)

    def step(carry: Any, x: Any, index: Any, key: Any) -> Any:
        result = run.run_body(carry, x, index, key, prefix, "")
        new = result.carry
        if str(jax.tree_util.tree_structure(new)) != str(carry_def):
            raise PlaitError(
                f"scan '{run.record.name}': the body returns a carry with structure "
                f"{jax.tree_util.tree_structure(new)}, but the carry going in has structure "
                f"{carry_def}. Return a carry of the same structure as init."
            )
        new = jax.tree_util.tree_map(lambda a, b: lax.convert_element_type(b, a.dtype), carry, new)
        captured["trace"] = result.trace
        if not main:
            return new
        plates, _ = plates_of(result.trace)
        lps: dict[str, Array] = {}
        supports: dict[str, Array] = {}
        for name, msg in result.trace.items():
            if msg.type != "sample":
                continue
            lp = site_log_prob(msg)
            scale = site_scale(msg, plates)
            if not (isinstance(scale, float | int) and scale == 1):
                lp = lp * scale
            lps[name] = lp
            if ENUM_DIM in msg.stash:
                supports[name] = msg.value
        for msg in result.trace.values():
            if msg.type == "sample":
                msg.fn = promote_fn(msg.fn, msg.value)
        skeletons, payloads = split_trace(result.trace, frozenset())
        captured["skeletons"] = skeletons
        return new, result.output, lps, supports, payloads

    index_aval = jax.ShapeDtypeStruct((), jnp.int32)  # type: ignore[no-untyped-call]
    closed, out_shape = jax.make_jaxpr(step, return_shape=True)(
        carry_avals, x_avals, index_aval, key_aval
    )
    return _Traced(closed, jax.tree_util.tree_structure(out_shape), captured)


def _call(
    traced: _Traced, inputs: Sequence[Any], batched: Sequence[bool]
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


def _depths(deps: list[frozenset[int]], skip: frozenset[int] = frozenset()) -> list[float]:
    """How many steps back each carry part remembers (``inf`` on a cycle)."""
    n = len(deps)
    memo: dict[int, float] = {}

    def depth(j: int, path: frozenset[int]) -> float:
        if j in memo:
            return memo[j]
        if j in path:
            return float("inf")
        inner = [i for i in deps[j] if i not in skip]
        d = 0.0 if not inner else 1 + max(depth(i, path | {j}) for i in inner)
        memo[j] = d
        return d

    return [depth(j, frozenset()) for j in range(n)]


def _closure(start: set[int], deps: list[frozenset[int]]) -> frozenset[int]:
    found = set(start)
    frontier = list(start)
    while frontier:
        j = frontier.pop()
        for i in deps[j]:
            if i not in found:
                found.add(i)
                frontier.append(i)
    return frozenset(found)


def _enum_dims_of(shape: tuple[int, ...], dims: set[int]) -> list[int]:
    return [k - len(shape) for k, n in enumerate(shape) if n != 1 and k - len(shape) in dims]


def vectorise(
    run: _Run, carry_u: Any, carries_in: list[Any]
) -> tuple[Any, Any, dict[str, Message]]:
    record = run.record
    state = run.state
    h, u, length = record.history, record.unrolled, record.length
    carry_leaves, carry_def = jax.tree_util.tree_flatten(carry_u)
    n_c = len(carry_leaves)
    runner_dims = {
        d for frame in state.stack[len(state.stack) - run.frames_pushed :] for d in frame.dims
    }
    dummy = [
        jnp.zeros(
            tuple(
                1 if k - len(jnp.shape(a)) in runner_dims else n for k, n in enumerate(jnp.shape(a))
            ),
            jnp.result_type(a),
        )
        for a in carry_leaves
    ]
    x_avals = jax.tree_util.tree_map(_step_aval, run.xs)
    key_aval = None if run.keys is None else _step_aval(run.keys)
    n_pass = (h if h > 0 else 1) if n_c else 0

    # Trace the passes, each in the next markov frame, then the step itself.
    carry_avals = jax.tree_util.tree_unflatten(carry_def, [_aval(a) for a in dummy])
    passes: dict[int, _Traced] = {}
    # The passes allocate left of the dims the step itself takes (as many as one unrolled
    # step used), so that the step's variables get the rightmost dims: no size-1 dims in
    # the step's arrays (XLA's CPU reductions over them are markedly slower).
    fad = state.first_available_dim
    width = max((len(f.dims) for f in run.unrolled_frames), default=1) or 1
    for k in range(n_pass, -1, -1):
        run.push_frame()
        state.first_available_dim = fad if k == 0 else fad - width
        try:
            traced = _trace_pass(run, carry_avals, x_avals, key_aval, "_PREV_" * k, main=k == 0)
        finally:
            state.first_available_dim = fad
        passes[k] = traced
        if k > 0:
            carry_avals = jax.tree_util.tree_unflatten(
                carry_def,
                [_aval_of(a) for a in traced.closed.out_avals],
            )
    main = passes[0]
    main_dims = set(state.visible())

    # Which carry parts need a sequential pass (they remember more than n_pass - 1 steps).
    deps = dependencies(main.closed, list(range(n_c)))[:n_c] if n_c else []
    depth = _depths(deps)
    seq = (
        _closure({j for j in range(n_c) if depth[j] >= max(n_pass, 1)}, deps)
        if h > 0
        else (frozenset(range(n_c)) if any(d > 0 for d in depth) else frozenset())
    )
    out_carry_avals = main.closed.out_avals[:n_c]
    for j in range(n_c):
        shape = tuple(out_carry_avals[j].shape)
        bad = _enum_dims_of(shape, main_dims) if (j in seq or h == 0) else []
        if bad:
            why = (
                "history=0 treats time as a plate, so the carry cannot hold enumerated values"
                if h == 0
                else f"it remembers more than history={h} steps back"
            )
            raise PlaitError(
                f"scan '{record.name}': carry part {j} (shape {shape}) depends on enumerated "
                f"values, but {why}. Raise scan's history, or keep only the last values of "
                "enumerated sites in the carry."
            )

    start = u - n_pass if h > 0 else 0
    first: list[Any] = []
    if seq:
        first = jax.tree_util.tree_leaves(carries_in[start] if h > 0 else carry_u)
        if len(first) != n_c:
            raise PlaitError(
                f"scan '{record.name}': the carry changes structure between steps, which "
                "enumeration supports only for a carry without a step counter."
            )
    init_leaves = jax.tree_util.tree_leaves(carry_u)
    flags_out: list[list[bool]] = []

    def numeric(
        x_leaves: list[Any],
        order_all: Any,
        key_leaves: list[Any],
        dummy: list[Any],
        first: list[Any],
        init_leaves: list[Any],
    ) -> tuple[list[Any], dict[int, Any]]:
        """Every array computation of the vectorised steps (one compilation when eager)."""

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
            fill = [jnp.zeros(a.shape, a.dtype) for a in main_in_avals]
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
            init_seq = [jnp.asarray(first[j], main_in_avals[j].dtype) for j in order]
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
            outs, flags = _call(passes[1], ins, [False] * n_c + [True] * (len(ins) - n_c))
            carry_vals, carry_flags = [], []
            for j in range(n_c):
                a = (
                    outs[j]
                    if flags[j]
                    else jnp.broadcast_to(outs[j], (length - 1, *jnp.shape(outs[j])))
                )
                carry_vals.append(jnp.concatenate([jnp.asarray(init_leaves[j], a.dtype)[None], a]))
                carry_flags.append(True)
        elif h > 0:
            for k in range(n_pass, 0, -1):
                lo, hi = u - k, length - k
                for j in seq:
                    carry_vals[j], carry_flags[j] = seq_slice(j, lo, hi), True
                xl, idx, kl = inputs_at(lo, hi)
                ins = [*carry_vals, *xl, *idx, *kl]
                outs, flags = _call(passes[k], ins, carry_flags + [True] * (len(ins) - n_c))
                carry_vals, carry_flags = outs[:n_c], flags[:n_c]
        for j in seq:
            carry_vals[j], carry_flags[j] = seq_slice(j, u, length), True
        xl, idx, kl = inputs_at(u, length)
        ins = [*carry_vals, *xl, *idx, *kl]
        outs, flags = _call(main, ins, carry_flags + [True] * (len(ins) - n_c))
        flags_out.append(flags)
        return outs, seq_final

    arguments = (
        jax.tree_util.tree_leaves(run.xs_logical),
        run.order,
        [] if run.keys is None else [run.keys],
        dummy,
        first,
        init_leaves,
    )
    # Eagerly, one compilation instead of one per operation; under a transformation
    # (the caller's jit, grad, vmap) inline, so that XLA fuses across the boundary.
    inline = any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(arguments))
    outs, seq_final = numeric(*arguments) if inline else jax.jit(numeric)(*arguments)
    flags = flags_out[-1]
    carry_out, ys, lps, supports, payloads = jax.tree_util.tree_unflatten(
        main.out_tree, [Flagged(o, fl) for o, fl in zip(outs, flags, strict=True)]
    )
    trace, skeletons = main.captured["trace"], main.captured["skeletons"]
    return finish(record, trace, skeletons, carry_out, ys, lps, supports, payloads, seq_final)
