"""``trace``: record every named site."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

from plait import Message, Messenger, Trace
from plait.errors import SiteAssertionError

__all__ = ["trace"]

P = ParamSpec("P")
R = TypeVar("R")


class trace(Messenger[P, R]):
    """Record a shallow copy of every named message, in execution order.

    ``with trace() as tr:`` gives the trace dict; ``trace(model).get_trace(*args)`` runs
    the model and returns it.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import seed, trace
        >>> def model() -> None:
        ...     sample("x", dist.Normal(0.0, 1.0))
        >>> tr = trace(seed(model, rng_seed=0)).get_trace()
        >>> list(tr), tr["x"].type
        (['x'], 'sample')
    """

    @overload
    def __init__(self: trace[..., Any], fn: None = None) -> None: ...
    @overload
    def __init__(self, fn: Callable[P, R]) -> None: ...
    def __init__(self, fn: Callable[P, R] | None = None) -> None:
        self.trace: Trace = {}
        super().__init__(fn)

    def __enter__(self) -> Trace:  # type: ignore[override]
        super().__enter__()
        self.trace = {}
        return self.trace

    def postprocess_message(self, msg: Message) -> None:
        name = msg.name
        if name is None:
            return
        if name in self.trace and msg.type in ("sample", "deterministic"):
            raise SiteAssertionError(
                name,
                f"site '{name}' appears twice in one model run; every sample and "
                "deterministic site needs a unique name (use scope(prefix=...) for "
                "repeated sub-models).",
            )
        self.trace[name] = msg.copy()

    def get_trace(self, *args: P.args, **kwargs: P.kwargs) -> Trace:
        """Run the wrapped function and return its trace."""
        self(*args, **kwargs)
        return self.trace
