"""``mask``: drop the log density of masked-out elements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

import jax.numpy as jnp

from plait import Message, Messenger
from plait.errors import HandlerError

__all__ = ["mask"]

P = ParamSpec("P")
R = TypeVar("R")


class mask(Messenger[P, R]):
    """Mask ``sample`` sites: elements where ``mask`` is False add nothing to the log
    density. ``mask`` is a bool or a boolean array broadcastable to the sites' batch
    shape; :func:`plait.get_mask` reads it.

    Example:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import mask, seed, trace
        >>> def model() -> None:
        ...     sample("x", dist.Normal(0.0, 1.0), obs=jnp.zeros(2))
        >>> site = trace(mask(model, mask=jnp.array([True, False]))).get_trace()["x"]
        >>> site.fn.log_prob(site.value)
        Array([-0.9189385,  0.       ], dtype=float32)
    """

    @overload
    def __init__(self: mask[..., Any], fn: None = None, mask: Any = True) -> None: ...
    @overload
    def __init__(self, fn: Callable[P, R], mask: Any = True) -> None: ...
    def __init__(self, fn: Callable[P, R] | None = None, mask: Any = True) -> None:
        if jnp.result_type(mask) != jnp.bool_:
            raise HandlerError(
                f"mask() needs a boolean mask, got dtype {jnp.result_type(mask)}; "
                "compare to get one (e.g. mask=y > 0) or use .astype(bool)."
            )
        self.mask = mask
        super().__init__(fn)

    def process_sample(self, msg: Message) -> None:
        msg.fn = msg.fn.mask(self.mask)

    def process_inspect(self, msg: Message) -> None:
        msg.mask = self.mask if msg.mask is None else (self.mask & msg.mask)
