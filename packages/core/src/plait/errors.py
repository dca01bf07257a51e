"""plait's exceptions and warnings, and the helper that shows a trace's shapes.

Every plait error is an instance of the builtin class NumPyro raises in the same
situation, so ``except ValueError`` or ``pytest.raises(AssertionError)`` in ported code
keeps working. :class:`SiteError` and :class:`HandlerError` are ``ValueError``; where
NumPyro raises another builtin, a subclass adds it, and stays a ``ValueError`` too:

- :class:`SiteError` (``ValueError``): a bad shape, value or option at a site.
- :class:`SiteTypeError` (``TypeError``): ``sample``'s ``fn`` is not a distribution.
- :class:`SiteAssertionError` (``AssertionError``): no key to draw a site, a site name
  used twice, a plate of invalid size or on a dim already in use.
- :class:`SiteRuntimeError` (``RuntimeError``): ``replay`` onto a site of another kind.
- :class:`HandlerError` (``ValueError``): a handler built with arguments it cannot use.
- :class:`HandlerTypeError` (``TypeError``): ``rng_seed`` or a ``*_fn`` of a wrong type.
- :class:`HandlerAssertionError` (``AssertionError``): ``replay`` without a trace, a
  handler without a function called with arguments.
- :class:`ConfigError` (``AssertionError``): an invalid option of a config helper.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plait._message import Message

__all__ = [
    "ConfigError",
    "HandlerAssertionError",
    "HandlerError",
    "HandlerTypeError",
    "PlaitError",
    "PluginLoadWarning",
    "SiteAssertionError",
    "SiteError",
    "SiteRuntimeError",
    "SiteTypeError",
    "format_shapes",
]


class PlaitError(Exception):
    """Base class of plait's errors."""


class SiteError(PlaitError, ValueError):
    """An error at one site of a model; ``site`` is its name (or ``None``)."""

    def __init__(self, site: str | None, message: str) -> None:
        super().__init__(message)
        self.site = site


class SiteTypeError(SiteError, TypeError):
    """A site got an object of the wrong type (NumPyro raises ``TypeError``), e.g. an
    ``fn`` that is not a distribution and that no plugin adapts."""


class SiteAssertionError(SiteError, AssertionError):
    """A site broke a rule NumPyro checks with ``assert``: no key to draw it, a name used
    twice, a plate of non-positive size or on a dim already in use."""


class SiteRuntimeError(SiteError, RuntimeError):
    """A site cannot be handled as asked (NumPyro raises ``RuntimeError``), e.g.
    ``replay`` of a trace whose site of that name is of another kind."""


class HandlerError(PlaitError, ValueError):
    """A handler was built with arguments it cannot use."""


class HandlerTypeError(HandlerError, TypeError):
    """A handler got an argument of the wrong type (NumPyro raises ``TypeError``), e.g.
    ``seed(rng_seed="0")`` or a ``substitute_fn`` that is not callable."""


class HandlerAssertionError(HandlerError, AssertionError):
    """A handler was used in a way NumPyro rejects with ``assert``: ``replay`` without a
    trace, a handler without a function called with arguments."""


class ConfigError(PlaitError, ValueError, AssertionError):
    """A configuration helper (:func:`plait.set_platform`, ...) got an invalid value
    (NumPyro asserts)."""


class PluginLoadWarning(UserWarning):
    """A plugin found through the ``plait`` entry points failed to load."""


def _shape(x: Any) -> str:
    shape = getattr(x, "shape", None)
    if shape is None:
        return "-" if x is None else "()"
    return str(tuple(shape))


def format_shapes(trace: Mapping[str, Message]) -> str:
    """A table of the sites of ``trace``: type, batch and event shapes, value shape, plates.

    Example:
        >>> import jax.numpy as jnp
        >>> from plait import Message, format_shapes
        >>> print(format_shapes({"x": Message(type="deterministic", name="x",
        ...                                   value=jnp.zeros(3))}))
        site  type           batch  event  value  plates
        x     deterministic  -      -      (3,)
    """
    rows = [("site", "type", "batch", "event", "value", "plates")]
    for name, msg in trace.items():
        fn = msg.fn if msg.type == "sample" else None
        batch = str(tuple(fn.batch_shape)) if fn is not None else "-"
        event = str(tuple(fn.event_shape)) if fn is not None else "-"
        plates = ",".join(f"{f.name}[{f.dim}]" for f in msg.cond_indep_stack)
        rows.append((name, msg.type, batch, event, _shape(msg.value), plates))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
