"""The handlers an enumerated ``scan`` body runs under, and what it records.

:class:`enum_body` enumerates the body's discrete sites in the current markov frame
(allocating each under ``prefix + name``, so the variable of lag ``k`` is called
``"_PREV_" * k + name`` as in NumPyro) and records the visible variables at each site.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from plait import Message, Messenger, StashKey
from plait.enum._dims import DimState
from plait.enum._enum import (
    DIM_NAMES,
    _check_plate_dims,
    _config_enumerate_fn,
    enumerate_site,
    wants_enumeration,
)
from plait.errors import SiteError
from plait.handlers import infer_config

__all__ = [
    "SCAN_RECORD",
    "SCAN_SITE",
    "config_form",
    "detect_form",
    "enclosing_loop",
    "enum_body",
    "is_scan",
]

SCAN_RECORD: Final[StashKey[Any]] = StashKey()
"""On the stacked sites an enumerated scan sends after its loop: the scan's record.
Such sites are summed out through the record (a chain), not one by one."""

SCAN_SITE: Final[StashKey[tuple[Any, str, int]]] = StashKey()
"""On every site an enumerated scan sends: ``(record, name in the body, step)``;
``step`` is the logical step of an unrolled (``_PREV_``) site, -1 for stacked ones."""


class enum_body(Messenger[..., Any]):
    """Enumerate the body's marked sites in the current frame, as ``prefix + name``."""

    def __init__(self, state: DimState, prefix: str = "") -> None:
        self.state = state
        self.prefix = prefix
        super().__init__()

    def process_sample(self, msg: Message) -> None:
        if wants_enumeration(msg):
            _check_plate_dims(msg, self.state, enumerating=True)
            name = msg.name
            msg.name = self.prefix + (name or "?")
            try:
                enumerate_site(msg, self.state)
            finally:
                msg.name = name

    def postprocess_sample(self, msg: Message) -> None:
        msg.stash[DIM_NAMES] = self.state.visible()

    def process_control_flow(self, msg: Message) -> None:
        raise SiteError(
            None,
            "a scan inside the body of an enumerated scan is not supported: plait-enum sums "
            "one time axis per scan. Enumerate the outer scan's sites only, or flatten the "
            "loops into one scan.",
        )


class _detect(Messenger[..., Any]):
    def __init__(self, found: list[str]) -> None:
        self.found = found
        super().__init__()

    def process_sample(self, msg: Message) -> None:
        if wants_enumeration(msg) and msg.name is not None:
            self.found.append(msg.name)


def enclosing_loop() -> Any:
    """The loop body being traced now (for a loop nested in another one), or ``None``."""
    from plait.control_flow import active_context

    return active_context().get()


def is_scan(msg: Message) -> bool:
    """Whether a ``control_flow`` message is a ``scan`` (``args == (f, init, xs)``,
    ``length`` and ``reverse`` in ``kwargs``: the message plait-control-flow sends)."""
    return len(msg.args) == 3 and "length" in msg.kwargs and "reverse" in msg.kwargs


def config_form() -> Messenger[Any, Any]:
    """``config_enumerate`` inside the body (NumPyro enumerates every discrete body site)."""
    return infer_config(config_fn=functools.partial(_config_enumerate_fn, "parallel"))


def detect_form(found: list[str]) -> Messenger[Any, Any]:
    """A handler that lists the sites that would be enumerated."""
    return _detect(found)
