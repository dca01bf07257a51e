"""One loop step as the handlers outside a ``scan`` see it: :class:`ScanContext` and
:class:`ScanStep` (plait's :class:`plait.ControlFlowStep`).

A handler outside the loop that acts inside the body (``substitute``, ``condition``,
``replay``, ...) holds names and values for the whole loop. :class:`ScanStep` translates:
``select`` cuts this step's part out of a value stacked over time (nested loops
included), and ``site_name`` gives a body site's name where that handler stands.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_batching import custom_vmap

from plait import Message, Messenger, PlateFrame, StashKey, plate_batch_shape
from plait.errors import SiteError

__all__ = ["ScanContext", "ScanStep", "active_context", "current_loop", "mark_sites"]

_SITE_CONTEXT: StashKey[ScanContext] = StashKey()
"""The innermost loop body a site was created in (set by :class:`mark_sites`)."""

_ACTIVE: ContextVar[ScanContext | None] = ContextVar("plait_scan_context", default=None)


def active_context() -> ContextVar[ScanContext | None]:
    """The context variable holding the loop body being traced now (``None`` outside)."""
    return _ACTIVE


def current_loop() -> ScanContext | None:
    """The loop step whose body is being traced now, or ``None`` outside every loop.

    Example:
        >>> current_loop() is None
        True
    """
    return _ACTIVE.get()


@dataclass(eq=False)
class ScanContext:
    """One traced step of one ``scan``: what every :class:`ScanStep` of it shares.

    Attributes:
        name: the body function's name, for error messages.
        length: the number of steps.
        index: this step's position along the scanned axis (a traced int; with
            ``reverse=True`` it counts down, so ``value[index]`` always lines up with the
            stacked outputs).
        handled_by: the handlers the loop's ``control_flow`` message reached, outermost
            first.
        frames: the plates enclosing the loop (the message's ``cond_indep_stack``).
        parent: the loop whose body this loop runs in, for nested loops.
        vectorised: the step is evaluated for all times at once under ``vmap`` (with
            ``index`` batched as ``arange(length)``), not inside ``lax.scan``.

    Example:
        >>> context = ScanContext("f", 10, 0, (), (), None)
        >>> context.length
        10
    """

    name: str
    length: int
    index: Any
    handled_by: tuple[Messenger[Any, Any], ...]
    frames: tuple[PlateFrame, ...]
    parent: ScanContext | None
    vectorised: bool = False


class mark_sites(Messenger[..., Any]):
    """Innermost handler of a body run: tags every site with the loop it belongs to."""

    def __init__(self, context: ScanContext) -> None:
        self.context = context
        super().__init__()

    def process_message(self, msg: Message) -> None:
        msg.stash[_SITE_CONTEXT] = self.context


class ScanStep:
    """The :class:`plait.ControlFlowStep` a handler outside a loop builds its body form from.

    Example:
        >>> import jax.numpy as jnp
        >>> from plait import Message
        >>> step = ScanStep(ScanContext("f", 3, jnp.asarray(1), (), (), None))
        >>> site = Message(type="deterministic", name="d", value=jnp.zeros(()))
        >>> step.select(site, jnp.array([10.0, 11.0, 12.0]))
        Array(11., dtype=float32)
    """

    def __init__(self, context: ScanContext) -> None:
        self.context = context

    @property
    def label(self) -> str:
        return f"scan '{self.context.name}'"

    @property
    def length(self) -> int:
        return self.context.length

    @property
    def index(self) -> Any:
        return self.context.index

    # -- names ---------------------------------------------------------------------------
    def _chain(self, msg: Message) -> list[ScanContext]:
        """The loops strictly inside this one that contain ``msg``, innermost first."""
        chain: list[ScanContext] = []
        context = msg.stash.get(_SITE_CONTEXT)
        while context is not None and context is not self.context:
            chain.append(context)
            context = context.parent
        return chain if context is self.context else []

    def site_name(self, msg: Message) -> str:
        # Renaming handlers (scope) act inside loops, and a body form sees a site after
        # every handler inside it: the site's own name is the one seen here.
        return msg.name or ""

    # -- values --------------------------------------------------------------------------
    def select(self, msg: Message, value: Any) -> Any:
        chain = self._chain(msg)
        inner_lengths = tuple(c.length for c in reversed(chain))
        innermost = chain[0] if chain else self.context
        reference = _per_step_reference(msg, innermost.frames)
        if reference is None:
            return value
        ref_leaves, ref_def = jax.tree_util.tree_flatten(reference)
        val_leaves, val_def = jax.tree_util.tree_flatten(value)
        if jax.tree_util.treedef_is_leaf(ref_def):
            return self._select_leaf(msg, value, ref_leaves[0].shape, inner_lengths)
        if not _same_structure(val_def, ref_def):
            return value
        picked = [
            self._select_leaf(msg, v, r.shape, inner_lengths)
            for v, r in zip(val_leaves, ref_leaves, strict=True)
        ]
        return jax.tree_util.tree_unflatten(val_def, picked)

    def _select_leaf(
        self, msg: Message, value: Any, site_shape: Sequence[int], inner: tuple[int, ...]
    ) -> Any:
        level_ndim = len(inner) + len(site_shape)
        ndim = jnp.ndim(value)
        if ndim <= level_ndim:
            return value  # one value for every step (an init strategy, a constant)
        context = self.context
        found = tuple(jnp.shape(value))
        expected = (context.length, *inner, *site_shape)
        if ndim > level_ndim + 1:
            raise SiteError(
                msg.name,
                f"site '{msg.name}' inside scan '{context.name}' (length {context.length}) "
                f"got a value of shape {found}; expected {expected} (stacked over time) or "
                f"{expected[1:]} (the same value every step).",
            )
        n = found[0]
        value = jnp.asarray(value)
        if n == context.length:
            take = _take_all_times if context.vectorised else _take
            return take(value, context.index)
        if n > context.length:
            raise SiteError(
                msg.name,
                f"site '{msg.name}' inside scan '{context.name}' got {n} values (shape "
                f"{found}) but the scan has only {context.length} steps; pass at most "
                f"{context.length} values along the leading dim.",
            )
        if inner:
            raise SiteError(
                msg.name,
                f"site '{msg.name}' inside a scan nested in scan '{context.name}' got {n} "
                f"values for {context.length} outer steps; forecasting past the data is only "
                "supported for the innermost scan. Pass the full length.",
            )
        fallback = _default_value(msg, context)
        if n == 0:
            return fallback
        known = lax.dynamic_index_in_dim(value, jnp.minimum(context.index, n - 1), keepdims=False)
        return jnp.where(context.index < n, known, fallback)


def _take(value: Any, index: Any) -> Any:
    return lax.dynamic_index_in_dim(value, index, keepdims=False)


@custom_vmap
def _take_all_times(value: Any, index: Any) -> Any:
    """``value[index]``; under the vectorised loop's ``vmap`` (``index`` batched as
    ``arange(len(value))``) simply ``value``, with no gather (nor scatter in its gradient).
    Only used where ``vmap`` replaces it: ``custom_vmap`` has no reverse-mode rule."""
    return _take(value, index)


@_take_all_times.def_vmap
def _take_all_times_batched(
    axis_size: int, in_batched: Sequence[bool], value: Any, index: Any
) -> tuple[Any, bool]:
    value_batched, index_batched = in_batched
    if index_batched and not value_batched and jnp.shape(value)[0] == axis_size:
        return value, True
    axes = (0 if value_batched else None, 0 if index_batched else None)
    return jax.vmap(_take, in_axes=axes)(value, index), True


def _same_structure(a: Any, b: Any) -> bool:
    return bool(a == b)


def _expected_batch(msg: Message, frames: Sequence[PlateFrame]) -> tuple[int, ...]:
    """The batch shape a sample site gets once every enclosing plate has acted (as
    :class:`plait.plate` computes it)."""
    fn = msg.fn
    dist_batch = tuple(msg.kwargs.get("sample_shape", ())) + tuple(fn.batch_shape)
    blocked = msg.infer.get("block_plates") or ()
    unique = {f.dim: f for f in (*msg.cond_indep_stack, *frames) if f.name not in blocked}
    try:
        return plate_batch_shape(list(unique.values()), dist_batch)
    except ValueError:
        return dist_batch  # the plate itself reports the mismatch


def _shape_of(x: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))  # type: ignore[no-untyped-call]


def _per_step_reference(msg: Message, frames: Sequence[PlateFrame]) -> Any:
    """What one step's value of ``msg`` looks like (``ShapeDtypeStruct`` leaves), or
    ``None`` when it cannot be known (a param with a callable initialiser)."""
    if msg.type == "sample":
        shape = _expected_batch(msg, frames) + tuple(msg.fn.event_shape)
        return jax.ShapeDtypeStruct(shape, jnp.float32)  # type: ignore[no-untyped-call]
    if msg.value is not None:
        return jax.tree_util.tree_map(_shape_of, msg.value)
    if msg.type == "param" and msg.args and not callable(msg.args[0]):
        return _shape_of(msg.args[0])
    return None


def _default_value(msg: Message, context: ScanContext) -> Any:
    """The value a step past the end of a shorter stacked value gets: a fresh draw for a
    sample site (forecasting), the computed value otherwise."""
    if msg.type == "sample":
        key = msg.kwargs.get("rng_key")
        if key is None:
            raise SiteError(
                msg.name,
                f"site '{msg.name}' inside scan '{context.name}' got fewer values than the "
                "scan's length, so the remaining steps must be drawn, which needs a key: run "
                "the model under plait.handlers.seed.",
            )
        fn = msg.fn
        batch = _expected_batch(msg, context.frames)
        if batch != tuple(fn.batch_shape):
            fn = fn.expand(batch)
        return fn.sample(key, ())
    if msg.value is not None:
        return msg.value
    if msg.type == "param" and msg.args:
        return msg.args[0]
    raise SiteError(
        msg.name,
        f"site '{msg.name}' inside scan '{context.name}' got fewer values than the scan's "
        "length and has no value of its own for the remaining steps; pass the full length.",
    )
