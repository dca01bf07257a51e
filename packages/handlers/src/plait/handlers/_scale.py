"""``scale``: multiply log densities."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

import numpy as np
from jax.core import Tracer

from plait import Message, Messenger
from plait.errors import HandlerError

__all__ = ["scale"]

P = ParamSpec("P")
R = TypeVar("R")


class scale(Messenger[P, R]):
    """Multiply the log density of ``sample`` (and ``param``/``plate``) sites by ``scale``.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import scale, seed, trace
        >>> def model() -> None:
        ...     sample("x", dist.Normal(0.0, 1.0))
        >>> trace(scale(seed(model, rng_seed=0), scale=2.0)).get_trace()["x"].scale
        2.0
    """

    @overload
    def __init__(self: scale[..., Any], fn: None = None, scale: Any = 1.0) -> None: ...
    @overload
    def __init__(self, fn: Callable[P, R], scale: Any = 1.0) -> None: ...
    def __init__(self, fn: Callable[P, R] | None = None, scale: Any = 1.0) -> None:
        if not isinstance(scale, Tracer) and np.any(np.less_equal(scale, 0)):
            raise HandlerError(f"scale() needs a positive scale, got {scale!r}.")
        self.scale = scale
        super().__init__(fn)

    def _multiply(self, msg: Message) -> None:
        msg.scale = self.scale if msg.scale is None else self.scale * msg.scale

    process_sample = _multiply
    process_param = _multiply
    process_plate = _multiply
