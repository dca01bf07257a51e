"""``infer_config``: set inference options of sample sites."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from plait import Message, Messenger
from plait.errors import HandlerTypeError

__all__ = ["infer_config"]

P = ParamSpec("P")
R = TypeVar("R")


class infer_config(Messenger[P, R]):
    """Update each sample site's ``infer`` options with ``config_fn(msg)`` (no effect
    without ``config_fn``, as in NumPyro).

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import infer_config, seed, trace
        >>> def model() -> None:
        ...     sample("z", dist.Bernoulli(0.5))
        >>> configured = infer_config(model, config_fn=lambda msg: {"enumerate": "parallel"})
        >>> trace(seed(configured, rng_seed=0)).get_trace()["z"].infer
        {'enumerate': 'parallel'}
    """

    @overload
    def __init__(
        self: infer_config[..., Any],
        fn: None = None,
        config_fn: Callable[[Message], Mapping[str, Any]] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self,
        fn: Callable[P, R],
        config_fn: Callable[[Message], Mapping[str, Any]] | None = None,
    ) -> None: ...
    def __init__(
        self,
        fn: Callable[P, R] | None = None,
        config_fn: Callable[[Message], Mapping[str, Any]] | None = None,
    ) -> None:
        if config_fn is not None and not callable(config_fn):
            raise HandlerTypeError(
                f"infer_config() needs config_fn, a function msg -> dict, got "
                f"{type(config_fn).__name__}."
            )
        self.config_fn = config_fn
        super().__init__(fn)

    def process_sample(self, msg: Message) -> None:
        if self.config_fn is not None:
            msg.infer.update(self.config_fn(msg))  # type: ignore[typeddict-item]
