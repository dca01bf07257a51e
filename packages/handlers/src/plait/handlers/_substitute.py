"""``substitute``: give sites values (without marking them observed)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from plait import ControlFlowStep, Message, Messenger
from plait.errors import HandlerError, HandlerTypeError

__all__ = ["substitute"]

P = ParamSpec("P")
R = TypeVar("R")

_SUBSTITUTED_TYPES = frozenset({"sample", "param", "mutable", "plate", "deterministic"})
_BODY_TYPES = _SUBSTITUTED_TYPES - {"plate"}


def _one_source(kind: str, data: object, fn: object) -> None:
    if (data is None) == (fn is None):
        raise HandlerError(f"{kind}() takes exactly one of data=... or {kind}_fn=....")
    if fn is not None and not callable(fn):
        raise HandlerTypeError(f"{kind}_fn must be callable, got {type(fn).__name__}.")


def _lookup(
    data: Mapping[str, Any] | None,
    fn: Callable[[Message], Any] | None,
    msg: Message,
    name: str | None,
) -> Any:
    """The value ``data`` (by ``name``) or ``fn`` (of ``msg``) gives a site; ``None``: none."""
    if data is not None:
        return data.get(name) if name is not None else None
    assert fn is not None
    return fn(msg)


class substitute(Messenger[P, R]):
    """Set the value of ``sample``, ``param``, ``mutable``, ``plate`` and
    ``deterministic`` sites by name (``data``) or by a function of the message
    (``substitute_fn``, ``None`` for no effect). Values reach into ``scan`` bodies,
    params and deterministics there included.

    Meant for inference algorithms; to observe a value prefer ``condition``.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import seed, substitute
        >>> def model() -> object:
        ...     return sample("x", dist.Normal(0.0, 1.0))
        >>> float(seed(substitute(model, data={"x": 2.0}), rng_seed=0)())
        2.0
    """

    @overload
    def __init__(
        self: substitute[..., Any],
        fn: None = None,
        data: Mapping[str, Any] | None = None,
        substitute_fn: Callable[[Message], Any] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self,
        fn: Callable[P, R],
        data: Mapping[str, Any] | None = None,
        substitute_fn: Callable[[Message], Any] | None = None,
    ) -> None: ...
    def __init__(
        self,
        fn: Callable[P, R] | None = None,
        data: Mapping[str, Any] | None = None,
        substitute_fn: Callable[[Message], Any] | None = None,
    ) -> None:
        _one_source("substitute", data, substitute_fn)
        self.data = data
        self.substitute_fn = substitute_fn
        super().__init__(fn)

    def _lookup(self, msg: Message, name: str | None) -> Any:
        return _lookup(self.data, self.substitute_fn, msg, name)

    def process_message(self, msg: Message) -> None:
        if msg.type not in _SUBSTITUTED_TYPES:
            return
        value = self._lookup(msg, msg.name)
        if value is not None:
            if msg.type == "mutable" and isinstance(value, dict):
                value = dict(value)
            msg.value = value

    def for_control_flow(self, step: ControlFlowStep) -> Messenger[Any, Any]:
        def body_value(msg: Message) -> Any:
            if msg.type not in _BODY_TYPES:
                return None
            value = self._lookup(msg, step.site_name(msg))
            return None if value is None else step.select(msg, value)

        return substitute(substitute_fn=body_value)
