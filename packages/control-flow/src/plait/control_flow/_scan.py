"""``scan``: ``lax.scan`` as a primitive that composes with plait's handlers."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp

from plait import Message, Messenger, apply_stack, current_stack, isolated_stack
from plait.control_flow._call import ScanCall, ScanHandler, ScanResult
from plait.control_flow._errors import (
    ControlFlowError,
    ControlFlowIndexError,
    ControlFlowTypeError,
)
from plait.control_flow._loop import LoopSpec, run_loop
from plait.control_flow._sites import PRIMITIVE
from plait.control_flow._step import active_context

__all__ = ["scan"]

C = TypeVar("C")
Y = TypeVar("Y")


def _name(f: Callable[..., Any]) -> str:
    return str(getattr(f, "__name__", type(f).__name__))


def _check_inputs(name: str, xs: Any, length: int | None) -> tuple[Any, int]:
    if length is not None and (isinstance(length, bool) or not isinstance(length, int)):
        raise ControlFlowTypeError(f"scan '{name}': length must be a Python int, got {length!r}.")
    if length is not None and length < 0:
        raise ControlFlowError(f"scan '{name}': length must be >= 0, got {length}.")
    xs = jax.tree_util.tree_map(jnp.asarray, xs)
    leaves = jax.tree_util.tree_leaves_with_path(xs)
    for path, leaf in leaves:
        if jnp.ndim(leaf) == 0:
            raise ControlFlowIndexError(
                f"scan '{name}': xs{jax.tree_util.keystr(path)} is a scalar; every leaf of xs "
                "needs a leading dim to scan over."
            )
    sizes = {jax.tree_util.keystr(path): int(jnp.shape(leaf)[0]) for path, leaf in leaves}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"xs{p}: {s}" for p, s in sizes.items())
        raise ControlFlowError(
            f"scan '{name}': the leaves of xs have different leading sizes ({listed}); they "
            "must all have the scan's length along dim 0."
        )
    if sizes:
        size = next(iter(sizes.values()))
        if length is not None and length != size:
            raise ControlFlowError(
                f"scan '{name}': length={length} but xs has leading size {size}; drop "
                "length or make them agree."
            )
        return xs, size
    if length is None:
        raise ControlFlowIndexError(
            f"scan '{name}': xs has no arrays, so the number of steps is unknown; pass length=... ."
        )
    return xs, length


def _run_claimed(msg: Message, request: _Request, rng_key: Any = None) -> ScanResult:
    """The default action of a scan's message: the handlers it reached that run scans
    their own way (:class:`ScanHandler`), innermost first, then the plain loop."""
    call = ScanCall(
        request.body,
        request.init,
        request.xs,
        request.length,
        reverse=request.reverse,
        history=request.history,
        rng_key=rng_key,
        handlers=msg.handled_by,
        plates=tuple(msg.cond_indep_stack),
        parent=active_context().get(),
        name=request.name,
    )
    proceed: Callable[[ScanCall], ScanResult] = ScanCall.run
    for handler in msg.handled_by:  # outermost first, so the innermost is asked first
        if isinstance(handler, ScanHandler):
            proceed = functools.partial(handler.run_scan, proceed=proceed)
    return proceed(call)


class _Request(NamedTuple):
    body: Callable[[Any, Any], tuple[Any, Any]]
    init: Any
    xs: Any
    length: int
    reverse: bool
    history: int
    name: str


def scan(
    f: Callable[[C, Any], tuple[C, Y]],
    init: C,
    xs: Any,
    length: int | None = None,
    reverse: bool = False,
    history: int = 1,
) -> tuple[C, Y]:
    """Scan ``f`` over the leading axis of ``xs`` (as :func:`jax.lax.scan`), with the sample,
    deterministic, param and mutable sites of ``f`` visible to the handlers outside.

    Handlers outside act on the body as they would on the unrolled loop: ``seed`` gives
    the loop one key, split once per step; ``substitute``, ``condition`` and ``replay``
    reach into the body by site name (names as seen where the handler stands, so
    ``scope``d names match), with values stacked over time (``value[t]`` at step ``t``),
    per step (the same every step), or shorter than the loop (the remaining steps are
    drawn: forecasting); ``do``, ``uncondition``, ``reparam``, ``scope`` and enclosing
    ``plate``s act inside the body (the plates vectorise it). After the loop every body
    site is sent once more, stacked over a leading time dim, so ``trace``, ``mask``,
    ``scale``, ``infer_config`` and ``block`` act on the stacked sites. Scans nest. The
    time dim is not a plate. Plugins that run scans their own way (enumeration) use
    :mod:`plait.control_flow.plugin_api`.

    Outside ``jax.jit`` the compiled loop is cached on what the traced body computes, so
    calling a seeded model again does not recompile it (see :func:`scan_cache_info`).

    Args:
        f: the body, ``(carry, x) -> (new_carry, y)``; the carry keeps its structure,
            shapes and dtypes.
        init: the initial carry (a pytree).
        xs: the values to scan over along their leading axis (a pytree, or ``None``).
        length: the number of steps; needed when ``xs`` has no arrays.
        reverse: scan from the last element to the first (outputs keep ``xs``'s order).
        history: the number of previous steps a step depends on, for enumeration
            (plait-enum); the plain loop ignores it.

    Returns:
        ``(final_carry, ys)``, ``ys`` stacking the outputs along a leading time axis.

    Raises:
        ControlFlowError: ``xs`` leaves disagree on their length or ``length`` disagrees
            with ``xs`` (a ``ValueError``); the body changes the carry's structure, shape
            or dtype (``ControlFlowTypeError``, a ``TypeError``); the number of steps is
            unknown (``ControlFlowIndexError``). All are :class:`plait.PlaitError`.
        SiteError: a value given to a body site does not fit the loop (longer than the
            loop, or with the wrong number of dims).

    Example:
        >>> import numpy as np
        >>> import numpyro.distributions as dist
        >>> import plait
        >>> import plait.handlers
        >>> from plait.control_flow import scan
        >>>
        >>> def gaussian_hmm(y=None, T=10):
        ...     def transition(x_prev, y_curr):
        ...         x_curr = plait.sample('x', dist.Normal(x_prev, 1))
        ...         y_curr = plait.sample('y', dist.Normal(x_curr, 1), obs=y_curr)
        ...         return x_curr, (x_curr, y_curr)
        ...
        ...     x0 = plait.sample('x_0', dist.Normal(0, 1))
        ...     _, (x, y) = scan(transition, x0, y, length=T)
        ...     return (x, y)
        >>>
        >>> # here we do some quick tests
        >>> with plait.handlers.seed(rng_seed=0):
        ...     x, y = gaussian_hmm(np.arange(10.))
        >>> assert x.shape == (10,) and y.shape == (10,)
        >>> assert np.all(y == np.arange(10))
        >>>
        >>> with plait.handlers.seed(rng_seed=0):  # generative
        ...     x, y = gaussian_hmm()
        >>> assert x.shape == (10,) and y.shape == (10,)
    """
    name = _name(f)
    if isinstance(history, bool) or not isinstance(history, int) or history < 0:
        raise ControlFlowError(f"scan '{name}': history must be an int >= 0, got {history!r}.")
    xs, length = _check_inputs(name, xs, length)
    reverse = bool(reverse)
    if not current_stack():
        spec = LoopSpec(name, length, reverse, (), (), None, record=False)
        result = run_loop(f, init, xs, None, spec, {})
        return result.carry, result.ys
    request = _Request(f, init, xs, length, reverse, history, name)
    msg = Message(type="control_flow", kwargs={"rng_key": None})
    msg.stash[PRIMITIVE] = "scan"
    msg.fn = functools.partial(_run_claimed, msg, request)
    apply_stack(msg)
    value = msg.value
    if not isinstance(value, ScanResult):
        raise ControlFlowTypeError(
            f"scan '{name}': a handler set the value of the scan's control_flow message to "
            f"a {type(value).__name__}; it must be a plait.control_flow.plugin_api.ScanResult."
        )
    _emit(value.sites, msg.handled_by)
    return value.carry, value.ys


def _emit(sites: dict[str, Message], handled_by: tuple[Messenger[Any, Any], ...]) -> None:
    """Send the loop's sites through the stack, without the handlers that acted inside."""
    inside = [h for h in handled_by if h.acts_inside_loops()]
    with isolated_stack(without=inside):
        for site in sites.values():
            apply_stack(site)
