"""plait's exceptions and warnings, and the helper that shows a trace's shapes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plait._message import Message

__all__ = [
    "HandlerError",
    "PlaitError",
    "PluginLoadWarning",
    "SiteError",
    "format_shapes",
]


class PlaitError(Exception):
    """Base class of plait's errors."""


class SiteError(PlaitError, ValueError):
    """An error at one site of a model; ``site`` is its name (or ``None``)."""

    def __init__(self, site: str | None, message: str) -> None:
        super().__init__(message)
        self.site = site


class HandlerError(PlaitError, ValueError):
    """A handler was built with arguments it cannot use."""


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
