"""``scope``: prefix site and plate names."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar, overload

from plait import ControlFlowStep, Message, Messenger, PlateFrame

__all__ = ["scope"]

P = ParamSpec("P")
R = TypeVar("R")


class scope(Messenger[P, R]):
    """Rename every named site to ``f"{prefix}{divider}{name}"`` (and the plates in its
    frames, unless ``"plate"`` is in ``hide_types``). Nested scopes nest: ``b/a/x``.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import scope, seed, trace
        >>> def model() -> None:
        ...     sample("x", dist.Normal(0.0, 1.0))
        >>> list(trace(scope(seed(model, rng_seed=0), prefix="a")).get_trace())
        ['a/x']
    """

    @overload
    def __init__(
        self: scope[..., Any],
        fn: None = None,
        prefix: str = "",
        divider: str = "/",
        *,
        hide_types: Sequence[str] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self,
        fn: Callable[P, R],
        prefix: str = "",
        divider: str = "/",
        *,
        hide_types: Sequence[str] | None = None,
    ) -> None: ...
    def __init__(
        self,
        fn: Callable[P, R] | None = None,
        prefix: str = "",
        divider: str = "/",
        *,
        hide_types: Sequence[str] | None = None,
    ) -> None:
        self.prefix = prefix
        self.divider = divider
        self.hide_types = frozenset(hide_types or ())
        super().__init__(fn)

    def _rename(self, name: str) -> str:
        return f"{self.prefix}{self.divider}{name}"

    def process_message(self, msg: Message) -> None:
        if msg.name and msg.type not in self.hide_types:
            msg.name = self._rename(msg.name)
        if msg.cond_indep_stack and "plate" not in self.hide_types:
            msg.cond_indep_stack = [
                PlateFrame(self._rename(f.name), f.dim, f.size) for f in msg.cond_indep_stack
            ]

    def for_control_flow(self, step: ControlFlowStep) -> scope[..., Any]:
        """Inside a loop body ``scope`` renames every step's sites (and the plates in their
        frames) as it would on the unrolled loop; so a site's name, wherever a handler
        stands in a loop body, is the one it has there (``ControlFlowStep.site_name``)."""
        return copy.copy(self)
