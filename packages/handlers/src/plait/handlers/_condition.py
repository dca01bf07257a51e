"""``condition``: observe sample sites."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from plait import ControlFlowStep, Message, Messenger
from plait.handlers._substitute import _lookup, _one_source

__all__ = ["condition"]

P = ParamSpec("P")
R = TypeVar("R")


class condition(Messenger[P, R]):
    """Observe ``sample`` sites: set their value and mark them observed, by name
    (``data``) or by a function of the message (``condition_fn``). Reaches into ``scan``
    bodies.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import condition, trace
        >>> def model() -> None:
        ...     sample("x", dist.Normal(0.0, 1.0))
        >>> tr = trace(condition(model, data={"x": 1.0})).get_trace()
        >>> tr["x"].is_observed
        True
    """

    @overload
    def __init__(
        self: condition[..., Any],
        fn: None = None,
        data: Mapping[str, Any] | None = None,
        condition_fn: Callable[[Message], Any] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self,
        fn: Callable[P, R],
        data: Mapping[str, Any] | None = None,
        condition_fn: Callable[[Message], Any] | None = None,
    ) -> None: ...
    def __init__(
        self,
        fn: Callable[P, R] | None = None,
        data: Mapping[str, Any] | None = None,
        condition_fn: Callable[[Message], Any] | None = None,
    ) -> None:
        _one_source("condition", data, condition_fn)
        self.data = data
        self.condition_fn = condition_fn
        super().__init__(fn)

    def _lookup(self, msg: Message, name: str | None) -> Any:
        return _lookup(self.data, self.condition_fn, msg, name)

    def process_sample(self, msg: Message) -> None:
        value = self._lookup(msg, msg.name)
        if value is not None:
            msg.value = value
            msg.is_observed = True

    def for_control_flow(self, step: ControlFlowStep) -> Messenger[Any, Any]:
        def body_value(msg: Message) -> Any:
            value = self._lookup(msg, step.site_name(msg))
            return None if value is None else step.select(msg, value)

        return condition(condition_fn=body_value)
