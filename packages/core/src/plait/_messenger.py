"""``Messenger``: the base of every handler (context manager, wrapper and decorator)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import Token
from typing import Any, ClassVar, Generic, ParamSpec, Protocol, TypeVar

from plait._message import Message
from plait._runtime import _STACK
from plait.errors import HandlerAssertionError, HandlerError

__all__ = ["ControlFlowStep", "Messenger"]

P = ParamSpec("P")
R = TypeVar("R")

_Method = Callable[[Any, Message], None]


class ControlFlowStep(Protocol):
    """What a control-flow primitive (``scan``) tells a handler about one loop step.

    A handler outside a loop that must act on the sites inside its body (``substitute``,
    ``condition``, ``replay``) builds a body form of itself from this in
    :meth:`Messenger.for_control_flow`.
    """

    @property
    def length(self) -> int:
        """Number of steps of the loop."""
        ...

    @property
    def index(self) -> Any:
        """The current step (a traced integer inside the compiled body)."""
        ...

    def site_name(self, msg: Message) -> str:
        """The name the body site ``msg`` carries where the outer handler stands."""
        ...

    def select(self, msg: Message, value: Any) -> Any:
        """This step's part of ``value``, a value the outer handler holds for the whole
        loop (stacked over time, or per-step); ``None`` when this step has none."""
        ...


class Messenger(Generic[P, R]):
    """Base class of handlers; keeps NumPyro's protocol and adds typed per-type methods.

    A subclass overrides ``process_<type>`` / ``postprocess_<type>`` for the message
    types it touches (``process_sample``, ``postprocess_param``, ...); they are found
    once, when the subclass is created. Only a handler that sees every type overrides
    :meth:`process_message` itself.

    A messenger is used three ways::

        >>> from plait.handlers import trace
        >>> def model() -> None: ...
        >>> with trace() as tr:                 # context manager
        ...     model()
        >>> tr2 = trace(model).get_trace()      # wrapper
        >>> @trace()                            # decorator
        ... def decorated() -> None: ...
    """

    _process_table: ClassVar[dict[str, _Method]] = {}
    _postprocess_table: ClassVar[dict[str, _Method]] = {}

    fn: Callable[P, R] | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._process_table = _methods_with_prefix(cls, "process_")
        cls._postprocess_table = _methods_with_prefix(cls, "postprocess_")

    def __init__(self, fn: Callable[P, R] | None = None) -> None:
        if fn is not None and not callable(fn):
            raise HandlerError(
                f"{type(self).__name__}() wraps a model function, but got "
                f"{type(fn).__name__} ({fn!r}), which is not callable. "
                f"Pass the model itself, e.g. {type(self).__name__}(model, ...)."
            )
        self.fn = fn
        self._tokens: list[Token[tuple[Messenger[Any, Any], ...]]] = []
        if fn is not None:
            functools.update_wrapper(self, fn, updated=())

    # -- the stack ---------------------------------------------------------------------
    def __enter__(self) -> Any:
        self._tokens.append(_STACK.set((*_STACK.get(), self)))
        return self

    def __exit__(self, exc_type: object, exc_value: object, traceback: object) -> None:
        _STACK.reset(self._tokens.pop())

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        fn = self.fn
        if fn is None:
            if len(args) == 1 and not kwargs and callable(args[0]):
                # Decorator form: ``@handler(...)`` then applied to a function.
                self.fn = args[0]
                functools.update_wrapper(self, args[0], updated=())
                return self  # type: ignore[return-value]
            raise HandlerAssertionError(
                f"{type(self).__name__}() has no function to call; wrap one with "
                f"{type(self).__name__}(fn, ...) or use it as a context manager."
            )
        with self._per_call():
            return fn(*args, **kwargs)

    def _per_call(self) -> Messenger[P, R]:
        """The handler instance one wrapped call runs under (a fresh one if stateful)."""
        return self

    # -- messages ----------------------------------------------------------------------
    def process_message(self, msg: Message) -> None:
        """Act on ``msg`` on its way in (innermost handler first)."""
        method = self._process_table.get(msg.type)
        if method is not None:
            method(self, msg)

    def postprocess_message(self, msg: Message) -> None:
        """Act on ``msg`` after its value is known (outermost reached handler first)."""
        method = self._postprocess_table.get(msg.type)
        if method is not None:
            method(self, msg)

    # -- contract with control-flow plugins ------------------------------------------------
    def for_control_flow(self, step: ControlFlowStep) -> Messenger[Any, Any] | None:
        """The handler to install inside a loop body for one step, or ``None``.

        Called by control-flow primitives (``scan``) for every handler the loop's
        ``control_flow`` message reached. Handlers that give values to sites
        (``substitute``, ``condition``, ``replay``) return a body form that reads
        ``step.select(msg, value)``; handlers that act on the loop's stacked sites after
        the loop (``trace``, ``mask``, ``scale``) keep the default, ``None``.
        """
        return None

    def rename_site(self, name: str) -> str:
        """The name a site named ``name`` carries after this handler (``scope`` renames)."""
        return name


def _methods_with_prefix(cls: type, prefix: str) -> dict[str, _Method]:
    table: dict[str, _Method] = {}
    for attr in dir(cls):
        if attr.startswith(prefix) and attr != prefix + "message":
            table[attr[len(prefix) :]] = getattr(cls, attr)
    return table
