"""What an enumerated ``scan`` leaves for the log density and ``infer_discrete``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from plait.enum._contract import Plate
from plait.enum._factors import Factor

__all__ = ["ScanRecord"]


@dataclass(eq=False)
class ScanRecord:
    """One enumerated scan's log-factors and layout.

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

    Example:
        >>> ScanRecord("step", length=10, reverse=False, history=1, unrolled=1).steps
        9
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
