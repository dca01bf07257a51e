"""Running one step of a ``scan`` body under the handlers it needs.

:func:`run_step` is the piece every scan strategy shares (plait's sequential and
vectorised loops here; enumeration in plait-enum through :class:`ScanCall.run_step`): it
hides the handlers outside, then runs the body under a fresh ``trace``, the body forms of
the handlers that act inside loops (:func:`body_forms`), ``seed(key)`` and a marker that
tags each site with its loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from plait import Messenger, Trace, isolated_stack
from plait.control_flow._errors import ControlFlowTypeError
from plait.control_flow._step import ScanContext, ScanStep, active_context, mark_sites
from plait.errors import PlaitError
from plait.handlers import seed, trace

__all__ = ["StepResult", "body_forms", "check_carry", "run_step"]


class StepResult(NamedTuple):
    """What one step of a body returns.

    Fields:
        carry: the new carry.
        output: the step's output ``y`` (stacked into ``ys`` by the loop).
        trace: the step's sites, recorded outermost in the body.

    Example:
        >>> StepResult(carry=1.0, output=None, trace={}).carry
        1.0
    """

    carry: Any
    output: Any
    trace: Trace


def body_forms(context: ScanContext) -> list[Messenger[Any, Any]]:
    """The body forms of the handlers the loop's message reached, outermost first: every
    handler that acts inside loops (:meth:`plait.Messenger.acts_inside_loops`) is asked for
    its form for this step; the others act on the stacked sites after the loop.

    Example:
        >>> from plait.handlers import substitute, trace
        >>> handlers = (trace(), substitute(data={"x": 1.0}))
        >>> forms = body_forms(ScanContext("f", 3, 0, handlers, (), None))
        >>> [type(form).__name__ for form in forms]  # trace acts after the loop
        ['substitute']
    """
    forms: list[Messenger[Any, Any]] = []
    step = ScanStep(context)
    for handler in context.handled_by:
        if not handler.acts_inside_loops():
            continue
        form = handler.for_control_flow(step)
        if form is not None:
            forms.append(form)
    return forms


def run_step(
    f: Callable[[Any, Any], tuple[Any, Any]],
    carry: Any,
    x: Any,
    *,
    context: ScanContext,
    rng_key: Any = None,
    outer: Sequence[Messenger[Any, Any]] = (),
    inner: Sequence[Messenger[Any, Any]] = (),
) -> StepResult:
    """Run ``f(carry, x)`` once, isolated from the handlers outside, and record its sites.

    Args:
        f: the body, ``(carry, x) -> (carry, y)``.
        carry: the carry going in.
        x: this step's slice of ``xs``.
        context: the loop and step this is (see :class:`ScanContext`).
        rng_key: the step's key; sites without a value draw from it. ``None``: no seed.
        outer: handlers entered first, outside the body forms (a plugin's own, e.g.
            plait-enum's enumeration of the body).
        inner: handlers entered last, right around ``f``.

    Returns:
        The new carry, the output and the step's trace.

    Example:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> def f(c, x):
        ...     return c + 1, sample("y", dist.Normal(c, 1.0), obs=x)
        >>> context = ScanContext("f", 3, jnp.asarray(0), (), (), None)
        >>> result = run_step(f, 0.0, 2.0, context=context)
        >>> result.carry, list(result.trace)
        (1.0, ['y'])
    """
    context_token = active_context().set(context)
    try:
        with ExitStack() as stack:
            stack.enter_context(isolated_stack())
            recorded: Trace = stack.enter_context(trace())
            for handler in (*outer, *body_forms(context)):
                stack.enter_context(handler)
            if rng_key is not None:
                stack.enter_context(seed(rng_seed=rng_key))
            stack.enter_context(mark_sites(context))
            for handler in inner:
                stack.enter_context(handler)
            out = f(carry, x)
    except PlaitError as e:
        e.add_note(f"(raised while tracing the body of scan '{context.name}')")
        raise
    finally:
        active_context().reset(context_token)
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise ControlFlowTypeError(
            f"scan '{context.name}': the body must return a pair (new_carry, y), got "
            f"{type(out).__name__}. Return `carry, y` (y may be None)."
        )
    return StepResult(out[0], out[1], recorded)


def check_carry(name: str, carry_in: Any, carry_out: Any) -> None:
    """Raise a :class:`plait.PlaitError` naming the scan when the body changes the
    carry's structure, shapes or dtypes (weak types aside)."""
    in_leaves, in_def_ = jax.tree_util.tree_flatten_with_path(carry_in)
    in_def: Any = in_def_
    out_leaves, out_def = jax.tree_util.tree_flatten(carry_out)
    if not bool(in_def == jax.tree_util.tree_structure(carry_out)):
        raise ControlFlowTypeError(
            f"scan '{name}': the body returns a carry with structure {out_def}, but the carry "
            f"going in has structure {jax.tree_util.tree_structure(carry_in)}. Return a "
            "carry of the same structure as init."
        )
    for (path, a), b in zip(in_leaves, out_leaves, strict=True):
        a_shape, b_shape = jnp.shape(a), jnp.shape(b)
        a_type, b_type = jnp.result_type(a), jnp.result_type(b)
        if a_shape != b_shape or a_type != b_type:
            where = "carry" + jax.tree_util.keystr(path)
            hint = ""
            if a_shape != b_shape and b_shape and not a_shape:
                hint = (
                    " If the scan runs inside a plate, give init the plate's shape "
                    f"(e.g. jnp.broadcast_to(init, {b_shape}))."
                )
            raise ControlFlowTypeError(
                f"scan '{name}': the body changes the {where} from "
                f"{a_type.name}{list(a_shape)} to {b_type.name}{list(b_shape)}; a carry must "
                f"keep its shape and dtype from step to step.{hint}"
            )
