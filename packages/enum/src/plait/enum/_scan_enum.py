"""The enumerated ``scan``: its body's discrete sites, step by step, vectorised over time.

As NumPyro does, the first ``2 h - 1`` steps (``h`` the history) are run one by one and
their sites are named ``"_PREV_" * (2h - 1 - i) + name``; the others are not run in a
sequential loop but once, vectorised over time (``vmap``), in a markov frame whose
previous ``h`` frames hold the variables of the previous ``h`` steps (named
``"_PREV_" * k + name``). Their carries come from ``h`` cheaper passes of the same body
(``carry pass`` ``k`` computes step ``t - k``'s carry from a placeholder, exact because the
carry forgets older steps; XLA drops everything but the carry), or, for carry parts that
never forget (a step counter), from a sequential ``lax.scan`` of the body that XLA
reduces to those parts. Log-factors that do not change over time are computed once.
See ``README.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax, random

from plait import REEMITTED, Message, Messenger, Trace, apply_stack, isolated_stack
from plait.control_flow import ScanContext, ScanResult, acts_inside, body_forms, run_step
from plait.enum._contract import Plate
from plait.enum._dims import DimState, Frame
from plait.enum._factors import Factor
from plait.enum._scan_body import (
    SCAN_RECORD,
    SCAN_SITE,
    config_form,
    detect_form,
    enclosing_loop,
    enum_body,
)
from plait.enum._scan_passes import _step_aval, vectorise
from plait.errors import SiteError

__all__ = ["SCAN_RECORD", "SCAN_SITE", "EnumScanRunner", "ScanRecord"]


@dataclass(eq=False)
class ScanRecord:
    """What an enumerated scan leaves for the log density and ``infer_discrete``.

    Attributes:
        name: the body's name.
        length: the number of steps.
        reverse: whether the scan ran from the last element.
        history: the history ``h`` (0: time is a plate).
        unrolled: how many first steps were run one by one (``_PREV_`` sites).
        time: the name of the time axis of the vectorised steps (``_time_<site>``).
        factors: per body site, its log-factor over the vectorised steps (with the time
            axis when it changes over time; in processing order, not ``xs`` order).
        variables: the enumerated variables of one vectorised step and their plates.
        site_vars: body site name to the variable it enumerates.
        plates: the plates inside the body.
        plate_dims: their dims.
        supports: per enumerated body site, its support (first axis) and event ndim.
        strategy: the contraction strategy asked for.
        stacked: per stacked site, its ``(fn, scale)`` as sent (to notice handlers that
            change them).
    """

    name: str
    length: int
    reverse: bool
    history: int
    unrolled: int
    time: str = "_time"
    factors: dict[str, Factor] = field(default_factory=dict)
    variables: dict[str, frozenset[str]] = field(default_factory=dict)
    site_vars: dict[str, str] = field(default_factory=dict)
    plates: dict[str, Plate] = field(default_factory=dict)
    plate_dims: dict[str, int] = field(default_factory=dict)
    supports: dict[str, tuple[Any, int]] = field(default_factory=dict)
    strategy: str = "auto"
    stacked: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """The number of vectorised steps."""
        return self.length - self.unrolled


def _name(f: Callable[..., Any]) -> str:
    return str(getattr(f, "__name__", type(f).__name__))


class EnumScanRunner:
    """Replaces a ``scan``'s runner under ``enum`` (set by ``enum.process_control_flow``)."""

    def __init__(self, msg: Message, state: DimState, original: Callable[..., Any]) -> None:
        self.msg = msg
        self.state = state
        self.original = original

    # -- entry -------------------------------------------------------------------------
    def __call__(
        self,
        f: Callable[[Any, Any], tuple[Any, Any]],
        init: Any,
        xs: Any,
        *,
        rng_key: Any = None,
        length: int,
        reverse: bool,
        history: int = 1,
        **kwargs: Any,
    ) -> ScanResult:
        name = _name(f)
        if length == 0 or not self._enumerates(f, init, xs, name, length):
            return self.original(  # type: ignore[no-any-return]
                f,
                init,
                xs,
                rng_key=rng_key,
                length=length,
                reverse=reverse,
                history=history,
                **kwargs,
            )
        if self.msg.cond_indep_stack:
            plates = ", ".join(f"'{p.name}'" for p in self.msg.cond_indep_stack)
            raise SiteError(
                None,
                f"scan '{name}' with enumerated sites runs inside plate(s) {plates}; "
                "enumerated scans under a plate are not supported yet. Move the plate into "
                "the scan body (with plate(...): inside f).",
            )
        h = min(history, length)
        unrolled = min(2 * h - 1, length) if h > 0 else 0
        record = ScanRecord(name, length, reverse, h, unrolled)
        run = _Run(self, f, xs, rng_key, record)
        return run.execute(init)

    def _enumerates(self, f: Any, init: Any, xs: Any, name: str, length: int) -> bool:
        """Whether one step of the body has a site to enumerate (traced, not run)."""
        found: list[str] = []
        x0 = jax.tree_util.tree_map(_step_aval, xs)
        parent = enclosing_loop()

        def step(carry: Any, x: Any) -> Any:
            index = jnp.zeros((), jnp.int32)
            context = ScanContext(name, length, index, self.msg.handled_by, (), parent)
            forms: list[Callable[[], Messenger[Any, Any]]] = [
                functools.partial(detect_form, found),
                config_form,
                *body_forms(context),
            ]
            result = run_step(f, carry, x, context=context, forms=forms, rng_key=None)
            return result.carry

        try:
            jax.eval_shape(step, init, x0)
        except SiteError:
            return True  # let the real run report it
        return bool(found)


class _Run:
    """One call of an enumerated scan."""

    def __init__(
        self,
        runner: EnumScanRunner,
        f: Callable[[Any, Any], tuple[Any, Any]],
        xs: Any,
        rng_key: Any,
        record: ScanRecord,
    ) -> None:
        self.runner = runner
        self.state = runner.state
        self.handled_by = runner.msg.handled_by
        self.f = f
        self.record = record
        length = record.length
        self.xs = xs
        self.order = jnp.arange(length, dtype=jnp.int32)
        if record.reverse:
            self.order = self.order[::-1]
            self.xs_logical = jax.tree_util.tree_map(lambda a: a[::-1], xs)
        else:
            self.xs_logical = xs
        self.keys: Any = None
        if rng_key is not None:

            def split(key: Any, _: None) -> tuple[Any, Any]:
                key, sub = random.split(key)
                return key, sub

            _, subkeys = lax.scan(split, rng_key, None, length=length)
            self.keys = subkeys  # in processing order, as lax.scan would split them
        self.frames_pushed = 0
        self.parent = enclosing_loop()
        self.unrolled_frames: list[Frame] = []
        self.variable_dims: set[int] = set()

    # -- helpers -----------------------------------------------------------------------
    def context(self, index: Any) -> ScanContext:
        record = self.record
        return ScanContext(record.name, record.length, index, self.handled_by, (), self.parent)

    def push_frame(self) -> None:
        """Enter the next markov frame (it sees the ``history`` previous ones)."""
        state = self.state
        state.push(state.new_frame(self.record.history, False, self.iter_frames))
        self.frames_pushed += 1

    def run_body(self, carry: Any, x: Any, index: Any, key: Any, prefix: str, rename: str) -> Any:
        context = self.context(index)
        forms: list[Callable[[], Messenger[Any, Any]]] = []
        if rename:
            from plait.handlers import scope

            forms.append(functools.partial(scope, prefix=rename, divider="", hide_types=["plate"]))
        forms += [
            functools.partial(enum_body, self.state, prefix),
            config_form,
            *body_forms(context),
        ]
        return run_step(self.f, carry, x, context=context, forms=forms, rng_key=key)

    # -- the run -----------------------------------------------------------------------
    def execute(self, init: Any) -> ScanResult:
        record = self.record
        self.iter_frames = self.state.iteration_parents()
        try:
            carry, y0s, carries_in = self.unroll(init)
            if record.steps == 0:
                sites: dict[str, Message] = {}
                final, ys = carry, _stack_list(y0s)
            else:
                final, ys_scanned, sites = self.vectorised(carry, carries_in)
                ys = _join_ys(y0s, ys_scanned)
        finally:
            for _ in range(self.frames_pushed):
                self.variable_dims.update(self.state.pop().dims)
        if record.reverse and ys is not None:
            ys = jax.tree_util.tree_map(lambda a: a[::-1], ys)
        self.retire(final)
        return ScanResult(final, ys, sites)

    def unroll(self, init: Any) -> tuple[Any, list[Any], list[Any]]:
        record = self.record
        carry = init
        y0s: list[Any] = []
        carries_in: list[Any] = []
        for s in range(record.unrolled):
            self.push_frame()
            self.unrolled_frames.append(self.state.current)
            t = record.length - 1 - s if record.reverse else s
            x = jax.tree_util.tree_map(lambda a, t=t: a[t], self.xs)
            key = None if self.keys is None else self.keys[s]
            prefix = "_PREV_" * (record.unrolled - s)
            carries_in.append(carry)
            result = self.run_body(carry, x, jnp.asarray(t, jnp.int32), key, prefix, prefix)
            carry = result.carry
            y0s.append(result.output)
            self.expose(result.trace, prefix, s)
        return carry, y0s, carries_in

    def expose(self, trace: Trace, prefix: str, step: int) -> None:
        """Send an unrolled step's sites through the handlers outside, as plain sites."""
        inside = [h for h in self.handled_by if acts_inside(h)]
        with isolated_stack(without=inside):
            for site in trace.values():
                if site.type not in ("sample", "deterministic", "param", "mutable"):
                    continue
                body = site.name[len(prefix) :] if site.name else ""
                site.stash[REEMITTED] = True
                site.stash[SCAN_SITE] = (self.record, body, step)
                site.stop = False
                apply_stack(site)

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
        return vectorise(self, carry_u, carries_in)


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
