"""The contract between ``scan`` and the plugins that act on it: one call of ``scan``
(:class:`ScanCall`), what running it gives (:class:`ScanResult`), and how a handler claims
it (:class:`ScanHandler`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

from plait import Message, Messenger, PlateFrame
from plait.control_flow._body import StepResult, run_step
from plait.control_flow._loop import LoopSpec, run_loop
from plait.control_flow._sites import SiteSkeleton, stacked_sites
from plait.control_flow._step import ScanContext

__all__ = ["ScanCall", "ScanHandler", "ScanResult"]

Body = Callable[[Any, Any], tuple[Any, Any]]


class ScanResult(NamedTuple):
    """What running a scan gives.

    Fields:
        carry: the final carry.
        ys: the stacked outputs.
        sites: the messages ``scan`` sends through the handlers outside after the loop, in
            order (the plain loop: the body's sites stacked over time, marked
            :data:`plait.control_flow.plugin_api.STACKED`). The handlers that act inside
            loops do not see them.

    Example:
        >>> ScanResult(carry=0.0, ys=None, sites={}).sites
        {}
    """

    carry: Any
    ys: Any
    sites: dict[str, Message]


@dataclass(frozen=True, eq=False)
class ScanCall:
    """One call of ``scan``, as the plugins that act on it see it.

    Attributes:
        body: the body, ``(carry, x) -> (new_carry, y)``.
        init: the initial carry.
        xs: the values scanned over (leading axis), or ``None``.
        length: the number of steps.
        reverse: the scan runs from the last element of ``xs`` to the first.
        history: how many previous steps a step depends on (for enumeration).
        rng_key: the loop's key (``None`` without ``seed``); a step's key is split from it.
        handlers: the handlers the scan's message reached, outermost first: they act on
            the loop, inside its body (:meth:`plait.Messenger.for_control_flow`) or on the
            sites sent after it.
        plates: the plates enclosing the scan.
        parent: the loop step whose body this scan runs in, for nested scans.
        name: the body's name, for error messages.

    Example:
        >>> import jax.numpy as jnp
        >>> call = ScanCall(lambda c, x: (c + x, c), 0.0, jnp.arange(3.0), 3)
        >>> result = call.run()
        >>> float(result.carry), result.ys.tolist()
        (3.0, [0.0, 0.0, 1.0])
    """

    body: Body
    init: Any
    xs: Any
    length: int
    reverse: bool = False
    history: int = 1
    rng_key: Any = None
    handlers: tuple[Messenger[Any, Any], ...] = ()
    plates: tuple[PlateFrame, ...] = ()
    parent: ScanContext | None = None
    name: str = "body"

    def context(self, index: Any, *, vectorised: bool = False) -> ScanContext:
        """The step at ``index`` (a traced int), as handlers acting inside see it; with
        ``vectorised`` the step is evaluated for all times at once under ``vmap``."""
        return ScanContext(
            self.name,
            self.length,
            index,
            self.handlers,
            self.plates,
            self.parent,
            vectorised,
        )

    def run_step(
        self,
        carry: Any,
        x: Any,
        *,
        index: Any,
        rng_key: Any = None,
        outer: Sequence[Messenger[Any, Any]] = (),
        inner: Sequence[Messenger[Any, Any]] = (),
        vectorised: bool = False,
    ) -> StepResult:
        """Run the body once as step ``index``, under the body forms of :attr:`handlers`,
        and record its sites (the building block of every way to run a scan).

        Args:
            carry: the carry going in.
            x: this step's slice of ``xs``.
            index: the step's position along ``xs`` (a traced int).
            rng_key: the step's key, or ``None``.
            outer: the plugin's own handlers, entered outside the body forms.
            inner: handlers entered right around the body.
            vectorised: see :meth:`context`.

        Returns:
            The new carry, the step's output and its trace.
        """
        return run_step(
            self.body,
            carry,
            x,
            context=self.context(index, vectorised=vectorised),
            rng_key=rng_key,
            outer=outer,
            inner=inner,
        )

    def run(self) -> ScanResult:
        """The plain loop: the body under :attr:`handlers`, sequentially or vectorised over
        time, compiled through the cache outside ``jit``; its sites stacked over time."""
        skeletons: dict[str, SiteSkeleton] = {}
        spec = LoopSpec(
            name=self.name,
            length=self.length,
            reverse=self.reverse,
            handled_by=self.handlers,
            frames=self.plates,
            parent=self.parent,
            record=True,
        )
        result = run_loop(self.body, self.init, self.xs, self.rng_key, spec, skeletons)
        sites = stacked_sites(skeletons, result.payloads, self.length, self.name)
        return ScanResult(result.carry, result.ys, sites)

    def replace(self, **changes: Any) -> ScanCall:
        """A copy with some attributes changed (a plugin passing a modified call on)."""
        return dataclasses.replace(self, **changes)


@runtime_checkable
class ScanHandler(Protocol):
    """A handler that runs the scans it reaches its own way (plait-enum's enumeration,
    plait-gaussian's Kalman collapse, a third party's marginaliser).

    When a scan's message has gone through the stack, every handler it reached that has
    a ``run_scan`` method is chained, the innermost asked first: it gets the
    :class:`ScanCall` and ``proceed``, which runs the scan the next way out (the next such
    handler, and finally the plain loop, :meth:`ScanCall.run`). It returns the
    :class:`ScanResult` (of its own, or of ``proceed(call)`` to leave this scan alone).
    It runs the body with :meth:`ScanCall.run_step` (so that every handler acting inside
    acts), and returns in ``sites`` what the handlers outside should see.

    Example:
        >>> import jax.numpy as jnp
        >>> from plait import Messenger
        >>> from plait.control_flow import scan
        >>> class count_scans(Messenger):
        ...     def __init__(self):
        ...         self.seen = 0
        ...         super().__init__()
        ...     def run_scan(self, call, proceed):
        ...         self.seen += 1
        ...         return proceed(call)
        >>> with count_scans() as counter:
        ...     _ = scan(lambda c, x: (c, x), 0.0, jnp.arange(3.0))
        >>> counter.seen
        1
    """

    def run_scan(self, call: ScanCall, proceed: Callable[[ScanCall], ScanResult]) -> ScanResult:
        """Run ``call`` (or pass it on with ``proceed(call)``)."""
        ...
