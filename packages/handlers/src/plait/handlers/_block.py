"""``block``: hide sites from the handlers outside."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, ParamSpec, TypeVar, overload

from plait import Message, Messenger, prng_key

__all__ = ["block"]

P = ParamSpec("P")
R = TypeVar("R")

_NEEDS_KEY = frozenset({"sample", "plate", "control_flow"})


class block(Messenger[P, R]):
    """Stop hidden messages from reaching the handlers outside (``trace``, ``seed``, ...).

    Which sites are hidden, by precedence: ``hide_fn(msg)``; names in ``hide``; types not
    in ``expose_types``; names not in ``expose``; by default every site. ``prng_key``
    messages always pass, and a hidden site that still needs randomness first asks for a
    key, so ``block(seed(f))`` and ``seed(block(f))`` draw the same values.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import block, seed, trace
        >>> def model() -> None:
        ...     sample("a", dist.Normal(0.0, 1.0))
        ...     sample("b", dist.Normal(0.0, 1.0))
        >>> list(trace(block(seed(model, rng_seed=0), hide=["a"])).get_trace())
        ['b']
    """

    @overload
    def __init__(
        self: block[..., Any],
        fn: None = None,
        hide_fn: Callable[[Message], bool] | None = None,
        hide: Collection[str] | None = None,
        expose_types: Collection[str] | None = None,
        expose: Collection[str] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self,
        fn: Callable[P, R],
        hide_fn: Callable[[Message], bool] | None = None,
        hide: Collection[str] | None = None,
        expose_types: Collection[str] | None = None,
        expose: Collection[str] | None = None,
    ) -> None: ...
    def __init__(
        self,
        fn: Callable[P, R] | None = None,
        hide_fn: Callable[[Message], bool] | None = None,
        hide: Collection[str] | None = None,
        expose_types: Collection[str] | None = None,
        expose: Collection[str] | None = None,
    ) -> None:
        if hide_fn is not None:
            self.hide_fn = hide_fn
        elif hide is not None:
            hidden = frozenset(hide)
            self.hide_fn = lambda msg: msg.name in hidden
        elif expose_types is not None:
            types = frozenset(expose_types)
            self.hide_fn = lambda msg: msg.type not in types
        elif expose is not None:
            exposed = frozenset(expose)
            self.hide_fn = lambda msg: msg.name not in exposed
        else:
            self.hide_fn = lambda msg: True
        super().__init__(fn)

    def process_message(self, msg: Message) -> None:
        if msg.type == "prng_key" or not self.hide_fn(msg):
            return
        msg.stop = True
        if msg.type in _NEEDS_KEY and msg.value is None and msg.kwargs.get("rng_key") is None:
            msg.kwargs["rng_key"] = prng_key()
