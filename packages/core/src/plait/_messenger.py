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

    A handler outside a loop that acts on the sites inside its body (``substitute``,
    ``condition``, ``replay``, ``do``, ...) builds a body form of itself from this in
    :meth:`Messenger.for_control_flow`.
    """

    @property
    def label(self) -> str:
        """The loop as error messages name it, e.g. ``"scan 'transition'"``."""
        ...

    @property
    def length(self) -> int:
        """Number of steps of the loop."""
        ...

    @property
    def index(self) -> Any:
        """The current step (a traced integer inside the compiled body)."""
        ...

    def site_name(self, msg: Message) -> str:
        """The name the body site ``msg`` carries where the outer handler stands (renaming
        handlers, ``scope``, act inside loops, so this is the name ``msg`` has when the
        handler's body form sees it)."""
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

    def __copy__(self) -> Messenger[P, R]:
        """A shallow copy that is not entered anywhere (its own, empty stack tokens)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._tokens = []
        return new

    # -- contract with control-flow plugins ------------------------------------------------
    def for_control_flow(self, step: ControlFlowStep) -> Messenger[Any, Any] | None:
        """The handler to install inside a loop body for one step, or ``None``.

        Called by control-flow primitives (``scan``) for every handler the loop's
        ``control_flow`` message reached, once per traced step, outermost handler first;
        the forms are entered in that order inside the body, as the handlers themselves
        would be around the unrolled loop.

        A handler acts on a loop in one of two ways, decided by whether its class
        overrides this method (see :meth:`acts_inside_loops`):

        * **inside** (it overrides): its body form sees every site of every step, as the
          handler would see the sites of the unrolled loop (``substitute``, ``condition``,
          ``replay``, ``do``, ``uncondition``, ``reparam``, ``lift``, ``scope``,
          ``plate``). Values it holds for the whole loop are cut to the step with
          ``step.select(msg, value)``;
          ``step.site_name(msg)`` gives a body site the name it has where the handler
          stands. After the loop, the body's sites, stacked over time, are sent through the
          stack again *without* this handler. Return ``None`` to leave one loop alone.
        * **after** (the default, ``None``): the handler sees the body's sites once, after
          the loop, stacked over a leading time dim (``trace``, ``mask``, ``scale``,
          ``block``, ``scope``, ``infer_config``).

        Example:
            >>> from plait import Messenger
            >>> from plait.handlers import substitute, trace
            >>> substitute(data={}).acts_inside_loops(), trace().acts_inside_loops()
            (True, False)
        """
        return None

    def acts_inside_loops(self) -> bool:
        """Whether this handler acts inside loop bodies (its class overrides
        :meth:`for_control_flow`); if so it does not see a loop's stacked sites."""
        return type(self).for_control_flow is not Messenger.for_control_flow


def _methods_with_prefix(cls: type, prefix: str) -> dict[str, _Method]:
    table: dict[str, _Method] = {}
    for attr in dir(cls):
        if attr.startswith(prefix) and attr != prefix + "message":
            table[attr[len(prefix) :]] = getattr(cls, attr)
    return table
