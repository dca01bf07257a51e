"""The enumerated ``scan``: its body's discrete sites, step by step, vectorised over time.

As NumPyro does, the first ``2 h - 1`` steps (``h`` the history) are run one by one and
their sites are named ``"_PREV_" * (2h - 1 - i) + name``; the others are not run in a
sequential loop but once, vectorised over time (``vmap``), in a markov frame whose
previous ``h`` frames hold the variables of the previous ``h`` steps (named
``"_PREV_" * k + name``). Their carries come from ``h`` cheaper passes of the same body
(see ``_scan_steps.py``). Log-factors that do not change over time are computed once.
See ``README.md``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax, random

from plait import Message, Messenger
from plait.control_flow import ControlFlowTypeError
from plait.control_flow.plugin_api import ScanCall, ScanResult, StepResult
from plait.enum._deps import dependencies
from plait.enum._dims import DimState, Frame
from plait.enum._keys import SCAN_SITE, ScanSite
from plait.enum._record import ScanRecord
from plait.enum._scan_body import config_form, detect_form, enum_body
from plait.enum._scan_record import Flagged, finish
from plait.enum._scan_steps import (
    StepPlan,
    Traced,
    carry_closure,
    carry_depths,
    enum_dims_of,
    evaluate,
    step_aval,
    trace_pass,
)
from plait.errors import SiteError
from plait.handlers import scope

__all__ = ["enumerates", "run_enumerated_scan"]


def enumerates(call: ScanCall) -> bool:
    """Whether one step of the body has a site to enumerate (traced abstractly, not run)."""
    found: list[str] = []
    x0 = jax.tree_util.tree_map(step_aval, call.xs)

    def step(carry: Any, x: Any) -> Any:
        index = jnp.zeros((), jnp.int32)
        result = call.run_step(carry, x, index=index, outer=[detect_form(found), config_form()])
        return result.carry

    try:
        jax.eval_shape(step, call.init, x0)
    except SiteError:
        return True  # let the real run report it
    return bool(found)


def run_enumerated_scan(call: ScanCall, state: DimState) -> ScanResult:
    """Run ``call`` with its body's discrete sites enumerated, in ``state``'s dims."""
    if call.plates:
        plates = ", ".join(f"'{p.name}'" for p in call.plates)
        raise SiteError(
            None,
            f"scan '{call.name}' with enumerated sites runs inside plate(s) {plates}; "
            "enumerated scans under a plate are not supported yet. Move the plate into "
            "the scan body (with plate(...): inside f).",
        )
    h = min(call.history, call.length)
    unrolled = min(2 * h - 1, call.length) if h > 0 else 0
    record = ScanRecord(call.name, call.length, call.reverse, h, unrolled)
    return _EnumeratedScan(call, state, record).execute()


class _EnumeratedScan:
    """One call of an enumerated scan."""

    def __init__(self, call: ScanCall, state: DimState, record: ScanRecord) -> None:
        self.call = call
        self.state = state
        self.record = record
        length = record.length
        self.order = jnp.arange(length, dtype=jnp.int32)
        self.xs_logical = call.xs
        if record.reverse:
            self.order = self.order[::-1]
            self.xs_logical = jax.tree_util.tree_map(lambda a: a[::-1], call.xs)
        self.keys: Any = None
        if call.rng_key is not None:

            def split(key: Any, _: None) -> tuple[Any, Any]:
                key, sub = random.split(key)
                return key, sub

            _, subkeys = lax.scan(split, call.rng_key, None, length=length)
            self.keys = subkeys  # in processing order, as lax.scan would split them
        self.frames_pushed = 0
        self.unrolled_frames: list[Frame] = []
        self.variable_dims: set[int] = set()
        self.iter_frames: tuple[Frame, ...] = ()
        self.main_dims: dict[int, str] = {}

    # -- helpers -----------------------------------------------------------------------
    def push_frame(self) -> None:
        """Enter the next markov frame (it sees the ``history`` previous ones)."""
        state = self.state
        state.push(state.new_frame(self.record.history, False, self.iter_frames))
        self.frames_pushed += 1

    def run_body(
        self, carry: Any, x: Any, index: Any, key: Any, prefix: str, rename: str = ""
    ) -> StepResult:
        outer: list[Messenger[Any, Any]] = []
        if rename:
            outer.append(scope(prefix=rename, divider="", hide_types=["plate"]))
        outer += [enum_body(self.state, prefix), config_form()]
        return self.call.run_step(carry, x, index=index, rng_key=key, outer=outer)

    # -- the run -----------------------------------------------------------------------
    def execute(self) -> ScanResult:
        record = self.record
        self.iter_frames = self.state.iteration_parents()
        sites: dict[str, Message] = {}
        try:
            carry, y0s, carries_in = self.unroll(sites)
            if record.steps == 0:
                final, ys = carry, _stack_list(y0s)
            else:
                final, ys_scanned, stacked = self.vectorised(carry, carries_in)
                sites.update(stacked)
                ys = _join_ys(y0s, ys_scanned)
        finally:
            for _ in range(self.frames_pushed):
                self.variable_dims.update(self.state.pop().dims)
        if record.reverse and ys is not None:
            ys = jax.tree_util.tree_map(lambda a: a[::-1], ys)
        if record.steps:
            final = self.markov_layout(final)
        self.retire(final)
        return ScanResult(final, ys, sites)

    def markov_layout(self, final: Any) -> Any:
        """The final carry with its enumerated values on the dims the equivalent ``markov``
        loop gives them (as NumPyro's scan does): the variables of step ``s`` on the dims
        of frame ``s mod (h + 1)`` of that loop (its allocation repeats with that period).

        The vectorised steps lay the last step's variables out otherwise (rightmost dims
        for the step itself), so each leaf's variable dims are moved there."""
        record, state = self.record, self.state
        h, length = record.history, record.length
        first = self.unrolled_frames[0].dims if self.unrolled_frames else {}
        prefix = "_PREV_" * record.unrolled
        bases = [name[len(prefix) :] for name in first.values()]
        if not bases:
            return final
        period: list[list[int]] = []
        try:  # the markov loop's frames, allocated as the loop would (then released)
            for s in range(h + 1):
                state.push(state.new_frame(h, False, self.iter_frames))
                period.append([state.allocate(f"_layout{s}_{k}") for k in range(len(bases))])
        finally:
            for _ in period:
                state.pop()
        for dims in period:
            self.variable_dims.update(dims)
        target: dict[int, int] = {}  # dim in the vectorised layout -> dim in the markov loop
        for dim, name in self.main_dims.items():
            lag = 0
            while name.startswith("_PREV_"):
                name, lag = name[len("_PREV_") :], lag + 1
            if name in bases and lag <= h:
                target[dim] = period[(length - 1 - lag) % (h + 1)][bases.index(name)]
        plates = -state.first_available_dim - 1  # the dims right of enumeration's
        leaves, treedef = jax.tree_util.tree_flatten(final)
        moved = [_move_dims(leaf, target, min(plates, jnp.ndim(leaf))) for leaf in leaves]
        return jax.tree_util.tree_unflatten(treedef, moved)

    def unroll(self, sites: dict[str, Message]) -> tuple[Any, list[Any], list[Any]]:
        """Run the first steps one by one; their sites (``_PREV_`` names) go to ``sites``."""
        record = self.record
        carry = self.call.init
        y0s: list[Any] = []
        carries_in: list[Any] = []
        for s in range(record.unrolled):
            self.push_frame()
            self.unrolled_frames.append(self.state.current)
            t = record.length - 1 - s if record.reverse else s
            x = jax.tree_util.tree_map(lambda a, t=t: a[t], self.call.xs)
            key = None if self.keys is None else self.keys[s]
            prefix = "_PREV_" * (record.unrolled - s)
            carries_in.append(carry)
            result = self.run_body(carry, x, jnp.asarray(t, jnp.int32), key, prefix, prefix)
            carry = result.carry
            y0s.append(result.output)
            for site in result.trace.values():
                if site.type not in ("sample", "deterministic", "param", "mutable"):
                    continue
                body = site.name[len(prefix) :] if site.name else ""
                site.stash[SCAN_SITE] = ScanSite(record, body, s)
                site.stop = False
                sites[site.name or body] = site
        return carry, y0s, carries_in

    def retire(self, final: Any) -> None:
        """Forbid the dims of this scan's variables that the final carry still holds."""
        dims: dict[int, str] = {}
        for leaf in jax.tree_util.tree_leaves(final):
            shape = jnp.shape(leaf)
            for k, n in enumerate(shape):
                dim = k - len(shape)
                if n != 1 and dim in self.variable_dims:
                    dims[dim] = f"the last carry of the enumerated scan '{self.record.name}'"
        if dims:
            self.state.retire(dims)

    # -- the vectorised steps ------------------------------------------------------------
    def vectorised(
        self, carry_u: Any, carries_in: list[Any]
    ) -> tuple[Any, Any, dict[str, Message]]:
        """Trace the passes, find which carry parts need a sequential scan, evaluate."""
        record, state, call = self.record, self.state, self.call
        h, u, length = record.history, record.unrolled, record.length
        carry_leaves, carry_def = jax.tree_util.tree_flatten(carry_u)
        n_c = len(carry_leaves)
        runner_dims = {
            d for frame in state.stack[len(state.stack) - self.frames_pushed :] for d in frame.dims
        }
        dummy = [
            jnp.zeros(
                tuple(
                    1 if k - len(jnp.shape(a)) in runner_dims else n
                    for k, n in enumerate(jnp.shape(a))
                ),
                jnp.result_type(a),
            )
            for a in carry_leaves
        ]
        x_avals = jax.tree_util.tree_map(step_aval, call.xs)
        key_aval = None if self.keys is None else step_aval(self.keys)
        n_pass = (h if h > 0 else 1) if n_c else 0

        # Trace the passes, each in the next markov frame, then the step itself. The
        # passes allocate left of the dims the step itself takes (as many as one unrolled
        # step used), so that the step's variables get the rightmost dims: no size-1 dims
        # in the step's arrays (XLA's CPU reductions over them are markedly slower).
        carry_avals = jax.tree_util.tree_unflatten(carry_def, [_aval(a) for a in dummy])
        passes: dict[int, Traced] = {}
        fad = state.first_available_dim
        width = max((len(f.dims) for f in self.unrolled_frames), default=1) or 1
        for k in range(n_pass, -1, -1):
            self.push_frame()
            state.first_available_dim = fad if k == 0 else fad - width
            try:
                traced = trace_pass(
                    self.run_body,
                    record.name,
                    carry_avals,
                    x_avals,
                    key_aval,
                    "_PREV_" * k,
                    main=k == 0,
                )
            finally:
                state.first_available_dim = fad
            passes[k] = traced
            if k > 0:
                carry_avals = jax.tree_util.tree_unflatten(
                    carry_def, [_aval_of(a) for a in traced.closed.out_avals]
                )
        main = passes[0]
        self.main_dims = dict(state.visible())
        main_dims = set(self.main_dims)

        # Which carry parts need a sequential pass (they remember more than n_pass - 1
        # steps back).
        deps = dependencies(main.closed, list(range(n_c)))[:n_c] if n_c else []
        depth = carry_depths(deps)
        seq = (
            carry_closure({j for j in range(n_c) if depth[j] >= max(n_pass, 1)}, deps)
            if h > 0
            else (frozenset(range(n_c)) if any(d > 0 for d in depth) else frozenset())
        )
        out_carry_avals = main.closed.out_avals[:n_c]
        for j in range(n_c):
            shape = tuple(out_carry_avals[j].shape)  # type: ignore[attr-defined]
            bad = enum_dims_of(shape, main_dims) if (j in seq or h == 0) else []
            if bad:
                why = (
                    "history=0 treats time as a plate, so the carry cannot hold enumerated "
                    "values"
                    if h == 0
                    else f"it remembers more than history={h} steps back"
                )
                raise SiteError(
                    None,
                    f"scan '{record.name}': carry part {j} (shape {shape}) depends on "
                    f"enumerated values, but {why}. Raise scan's history, or keep only the "
                    "last values of enumerated sites in the carry.",
                )

        start = u - n_pass if h > 0 else 0
        first: list[Any] = []
        if seq:
            first = jax.tree_util.tree_leaves(carries_in[start] if h > 0 else carry_u)
            if len(first) != n_c:
                raise ControlFlowTypeError(
                    f"scan '{record.name}': the carry changes structure between steps, which "
                    "enumeration supports only for a carry without a step counter."
                )
        plan = StepPlan(passes, n_c, h, u, length, n_pass, seq, start)
        flags_out: list[list[bool]] = []
        arguments = (
            jax.tree_util.tree_leaves(self.xs_logical),
            self.order,
            [] if self.keys is None else [self.keys],
            dummy,
            first,
            jax.tree_util.tree_leaves(carry_u),
        )

        def numeric(*args: Any) -> tuple[list[Any], dict[int, Any]]:
            return evaluate(plan, flags_out, *args)

        # Eagerly, one compilation instead of one per operation; under a transformation
        # (the caller's jit, grad, vmap) inline, so that XLA fuses across the boundary.
        inline = any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(arguments))
        outs, seq_final = numeric(*arguments) if inline else jax.jit(numeric)(*arguments)
        flags = flags_out[-1]
        carry_out, ys, lps, supports, payloads = jax.tree_util.tree_unflatten(
            main.out_tree, [Flagged(o, fl) for o, fl in zip(outs, flags, strict=True)]
        )
        return finish(
            record, main.trace, main.skeletons, carry_out, ys, lps, supports, payloads, seq_final
        )


def _move_dims(leaf: Any, target: dict[int, int], rank: int) -> Any:
    """``leaf`` with each of its dims in ``target`` (size > 1) moved to the target dim; other
    dims keep their places; leading size-1 dims beyond what is needed (and beyond ``rank``,
    the plate dims the leaf has) are dropped."""
    shape = jnp.shape(leaf)
    src = [k - len(shape) for k, n in enumerate(shape) if n != 1 and k - len(shape) in target]
    if not src:
        return leaf
    dst = [target[d] for d in src]
    others = [k - len(shape) for k, n in enumerate(shape) if n != 1 and k - len(shape) not in src]
    needed = max([rank, *(-d for d in dst), *(-d for d in others)])
    ndim = max(len(shape), needed)
    value = jnp.reshape(leaf, (1,) * (ndim - len(shape)) + shape)
    value = jnp.moveaxis(value, src, dst)
    return jnp.reshape(value, value.shape[ndim - needed :])


def _aval_of(a: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(a.shape, a.dtype)  # type: ignore[no-untyped-call]


def _aval(x: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))  # type: ignore[no-untyped-call]


def _stack_list(ys: list[Any]) -> Any:
    if not ys:
        return None
    return jax.tree_util.tree_map(
        lambda *zs: jnp.stack([jnp.reshape(z, jnp.shape(zs[0])) for z in zs]), ys[0], *ys[1:]
    )


def _join_ys(y0s: list[Any], ys: Any) -> Any:
    if not y0s:
        return ys
    head = _stack_list(y0s)
    return jax.tree_util.tree_map(
        lambda a, b: jnp.concatenate([a, jnp.reshape(b, b.shape[:1] + a.shape[1:])]), head, ys
    )
