"""The handlers an enumerated ``scan`` body runs under, besides the loop's body forms.

:class:`enum_body` enumerates the body's discrete sites in the current markov frame
(allocating each under ``prefix + name``, so the variable of lag ``k`` is called
``"_PREV_" * k + name`` as in NumPyro) and records the visible variables at each site.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from plait import Message, Messenger
from plait.control_flow.plugin_api import PRIMITIVE, CondCall, CondResult
from plait.enum._cond import run_enumerated_cond
from plait.enum._dims import DimState
from plait.enum._keys import DIM_NAMES
from plait.enum._site_enum import (
    check_plate_dims,
    enumerate_config,
    enumerate_site,
    wants_enumeration,
)
from plait.errors import SiteError
from plait.handlers import infer_config

__all__ = ["config_form", "detect_form", "enum_body"]


class enum_body(Messenger[..., Any]):
    """Enumerate the body's marked sites in the current frame, as ``prefix + name``."""

    def __init__(self, state: DimState, prefix: str = "") -> None:
        self.state = state
        self.prefix = prefix
        super().__init__()

    def process_sample(self, msg: Message) -> None:
        self.state.note(msg.cond_indep_stack)
        if wants_enumeration(msg):
            check_plate_dims(msg, self.state, enumerating=True)
            name = msg.name
            msg.name = self.prefix + (name or "?")
            try:
                enumerate_site(msg, self.state)
            finally:
                msg.name = name

    def postprocess_sample(self, msg: Message) -> None:
        msg.stash[DIM_NAMES] = self.state.visible()

    def process_control_flow(self, msg: Message) -> None:
        if msg.stash.get(PRIMITIVE) == "cond":  # summed out in the step (run_cond)
            return
        raise SiteError(
            None,
            "a scan inside the body of an enumerated scan is not supported: plait-enum sums "
            "one time axis per scan. Enumerate the outer scan's sites only, or flatten the "
            "loops into one scan.",
        )

    def run_cond(self, call: CondCall, proceed: Callable[[CondCall], CondResult]) -> CondResult:
        return run_enumerated_cond(call, self.state, proceed, self.prefix)


class _detect(Messenger[..., Any]):
    def __init__(self, found: list[str]) -> None:
        self.found = found
        super().__init__()

    def process_sample(self, msg: Message) -> None:
        if wants_enumeration(msg) and msg.name is not None:
            self.found.append(msg.name)


def config_form() -> Messenger[Any, Any]:
    """``config_enumerate`` inside the body (NumPyro enumerates every discrete body site)."""
    return infer_config(config_fn=functools.partial(enumerate_config, "parallel"))


def detect_form(found: list[str]) -> Messenger[Any, Any]:
    """A handler that lists the sites that would be enumerated."""
    return _detect(found)
