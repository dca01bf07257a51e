"""The errors of ``scan`` (and the other control-flow primitives): instances of the builtin
classes NumPyro's ``scan`` raises in the same situation (through ``lax.scan``)."""

from __future__ import annotations

from plait.errors import PlaitError

__all__ = ["ControlFlowError", "ControlFlowIndexError", "ControlFlowTypeError"]


class ControlFlowError(PlaitError, ValueError):
    """A control-flow primitive got inputs it cannot use (``xs`` of different lengths, a
    ``length`` that disagrees with ``xs``)."""


class ControlFlowTypeError(ControlFlowError, TypeError):
    """A body returned something of the wrong structure or type (a carry that changes its
    structure, shapes or dtypes; not a ``(carry, y)`` pair)."""


class ControlFlowIndexError(ControlFlowError, IndexError):
    """The number of steps cannot be read off ``xs`` (no arrays and no ``length``, or a
    scalar leaf): NumPyro's ``scan`` fails indexing there."""
