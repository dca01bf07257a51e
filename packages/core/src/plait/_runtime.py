"""The handler stack: the one place that holds it, applies it, and runs default actions."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from plait.errors import SiteAssertionError

if TYPE_CHECKING:
    from plait._message import Message
    from plait._messenger import Messenger

__all__ = ["apply_stack", "current_stack", "default_process_message", "isolated_stack"]

_STACK: ContextVar[tuple[Messenger[Any, Any], ...]] = ContextVar("plait_stack", default=())


def current_stack() -> tuple[Messenger[Any, Any], ...]:
    """The active handlers, outermost first.

    Example:
        >>> from plait import current_stack
        >>> current_stack()
        ()
    """
    return _STACK.get()


@contextmanager
def isolated_stack(without: Collection[Messenger[Any, Any]] | None = None) -> Iterator[None]:
    """Run a block with the handlers in ``without`` taken off the active stack, or with an
    empty stack when ``without`` is ``None``; the stack is restored afterwards.

    For plugins that run model code out of line (a loop body traced by ``scan``), or that
    send sites again past handlers that already acted on them.

    Example:
        >>> from plait import current_stack, isolated_stack
        >>> from plait.handlers import trace
        >>> with trace(), isolated_stack():
        ...     current_stack()
        ()
    """
    stack = _STACK.get()
    if without is None:
        kept: tuple[Messenger[Any, Any], ...] = ()
    else:
        kept = tuple(h for h in stack if not any(h is w for w in without))
    token = _STACK.set(kept)
    try:
        yield
    finally:
        _STACK.reset(token)


def default_process_message(msg: Message) -> None:
    """Compute ``msg.value`` when no handler supplied it.

    A ``sample`` site draws from its distribution with ``kwargs["rng_key"]``; any other
    message calls ``msg.fn(*msg.args, **msg.kwargs)``.

    Example:
        >>> import jax
        >>> import numpyro.distributions as dist
        >>> from plait import Message, default_process_message
        >>> msg = Message(type="sample", name="x", fn=dist.Normal(0.0, 1.0),
        ...               kwargs={"rng_key": jax.random.key(0), "sample_shape": (2,)})
        >>> default_process_message(msg)
        >>> msg.value.shape
        (2,)
    """
    if msg.value is not None:
        return
    if msg.type == "sample":
        key = msg.kwargs.get("rng_key")
        if key is None:
            raise SiteAssertionError(
                msg.name,
                f"site '{msg.name}' needs a random key to draw a value: run the model under "
                "plait.handlers.seed(model, rng_seed=0), pass rng_key=... to sample(), "
                "or give the site a value (obs=..., substitute, condition).",
            )
        fn = msg.fn
        sample_shape = msg.kwargs.get("sample_shape", ())
        draw = getattr(fn, "sample_with_intermediates", None)
        if draw is None:
            msg.value = fn.sample(key, sample_shape)
        else:
            msg.value, msg.intermediates = draw(key, sample_shape)
    else:
        msg.value = msg.fn(*msg.args, **msg.kwargs)


def apply_stack(msg: Message) -> Message:
    """Send ``msg`` through the active handlers and return it, with NumPyro's order.

    1. ``process_message`` of each handler from the innermost (last entered) to the
       outermost, stopping after the first handler that sets ``msg.stop``;
    2. the default action (:func:`default_process_message`) if ``msg.value`` is unset;
    3. ``postprocess_message`` of the handlers reached in step 1, from the outermost
       reached one (the stopper, if any) back to the innermost.

    ``msg.handled_by`` is set to the handlers reached in step 1, outermost first.

    Example:
        >>> from plait import Message, apply_stack
        >>> apply_stack(Message(type="deterministic", name="d", value=1.0)).value
        1.0
    """
    stack = _STACK.get()
    n = len(stack)
    start = n
    for handler in reversed(stack):
        start -= 1
        handler.process_message(msg)
        if msg.stop:
            break
    reached = stack[start:]
    msg.handled_by = reached
    default_process_message(msg)
    for handler in reached:
        handler.postprocess_message(msg)
    return msg
