"""``markov``: declare which enumerated variables later code may still depend on."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, ParamSpec, TypeVar, overload

from plait import Messenger
from plait.enum._dims import Frame, current_state
from plait.errors import HandlerError

__all__ = ["markov"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class _markov(Messenger[P, R]):
    """The context-manager and wrapper form of :func:`markov`."""

    def __init__(self, fn: Callable[P, R] | None, history: int, keep: bool) -> None:
        self.history = history
        self.keep = keep
        self._pushed: list[Frame | None] = []
        self._saved: list[dict[int, str]] = []
        super().__init__(fn)

    def _per_call(self) -> _markov[P, R]:
        fresh: _markov[P, R] = _markov(None, self.history, self.keep)
        fresh.fn = self.fn
        fresh._saved = []  # stateless per call
        return fresh

    def __enter__(self) -> Any:
        state = current_state()
        frame = None
        if state is not None:
            frame = state.new_frame(self.history, self.keep)
            if self.keep and self._saved:
                frame.dims.update(self._saved.pop())
            state.push(frame)
        self._pushed.append(frame)
        return super().__enter__()

    def __exit__(self, exc_type: object, exc_value: object, traceback: object) -> None:
        super().__exit__(exc_type, exc_value, traceback)
        frame = self._pushed.pop()
        state = current_state()
        if frame is not None and state is not None:
            state.pop()
            if self.keep:
                self._saved.append(dict(frame.dims))


def _iterate(iterable: Iterable[T], history: int, keep: bool) -> Iterator[T]:
    state = current_state()
    if state is None:
        yield from iterable
        return
    parents = state.iteration_parents()
    pushed = 0
    try:
        for value in iterable:
            state.push(state.new_frame(history, keep, parents))
            pushed += 1
            yield value
    finally:
        for _ in range(pushed):
            state.pop()


@overload
def markov(fn: None = None, history: int = 1, keep: bool = False) -> _markov[..., Any]: ...
@overload
def markov(fn: Callable[P, R], history: int = 1, keep: bool = False) -> _markov[P, R]: ...
@overload
def markov(fn: Iterable[T], history: int = 1, keep: bool = False) -> Iterator[T]: ...
def markov(
    fn: Callable[P, R] | Iterable[T] | None = None, history: int = 1, keep: bool = False
) -> _markov[P, R] | _markov[..., Any] | Iterator[T]:
    """Markov dependence: variables of a context are forgotten ``history`` contexts later.

    Under :func:`plait.enum.enum`, each ``markov`` context (each iteration of
    ``for t in markov(range(T))``) is a frame that sees only the ``history`` previous
    frames, so the dims of older enumerated variables are given to new ones: a chain of
    any length is enumerated in ``history + 1`` dims. Outside ``enum`` it does nothing.

    Args:
        fn: a model function to wrap, an iterable to iterate over, or ``None`` for a
            context manager.
        history: how many previous contexts stay visible (0: like a plate).
        keep: make sibling contexts share their variables (for branching models).

    Returns:
        A wrapper or context manager, or an iterator over ``fn`` when it is iterable.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.enum import config_enumerate, enum, markov
        >>> def chain():
        ...     z, shapes = 0, []
        ...     for t in markov(range(4)):
        ...         z = sample(f"z_{t}", dist.Categorical(jnp.full((2, 2), 0.5)[z]))
        ...         shapes.append(z.shape)
        ...     return shapes
        >>> import jax.numpy as jnp
        >>> enum(config_enumerate(chain))()
        [(2,), (2, 1), (2,), (2, 1)]
    """
    if isinstance(history, bool) or not isinstance(history, int):
        raise HandlerError(f"markov(history={history!r}): history must be an int.")
    history = max(history, 0)  # NumPyro reads a negative history as 0 (no memory)
    if fn is not None and not callable(fn):
        if not isinstance(fn, Iterable):
            raise HandlerError(
                f"markov() takes a model function, an iterable or nothing; got {type(fn).__name__}."
            )
        return _iterate(fn, history, keep)
    return _markov(fn, history, keep)
