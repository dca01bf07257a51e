"""The base of the reparameterisers, with NumPyro's ``_unwrap``/``_wrap`` helpers."""

from __future__ import annotations

from typing import Any

import numpyro.distributions as dist

from plait.errors import SiteError
from plait.handlers import Reparam as _Protocol

__all__ = ["ObservedSiteError", "Reparam", "refuse_observed"]


class ObservedSiteError(SiteError, AssertionError):
    """A reparameteriser of latent sites met an observed one (an ``AssertionError`` in
    NumPyro, and a ``ValueError`` like every plait site error)."""


def refuse_observed(kind: str, name: str, obs: Any) -> None:
    """Raise :class:`ObservedSiteError` when ``obs`` is given."""
    if obs is not None:
        raise ObservedSiteError(
            name,
            f"{kind} does not support observe statements: site '{name}' is observed. "
            "Reparameterize latent sites only.",
        )


class Reparam(_Protocol):
    """Base of the reparameterisers (NumPyro's ``numpyro.infer.reparam.Reparam``).

    A reparameteriser is called by the ``reparam`` handler as ``(name, fn, obs) ->
    (new_fn, value)``: ``new_fn=None`` with a value turns the site into a deterministic
    one. Subclasses implement ``__call__``; :meth:`_unwrap` and :meth:`_wrap` strip and
    restore the ``Independent``/``ExpandedDistribution`` wrappers of a distribution.

    Example:
        >>> import numpyro.distributions as dist
        >>> base, expand_shape, event_dim = Reparam()._unwrap(
        ...     dist.Normal(0.0, 1.0).expand([3, 2]).to_event(1))
        >>> type(base).__name__, expand_shape, event_dim
        ('Normal', (3, 2), 1)
    """

    def __call__(self, name: str, fn: Any, obs: Any) -> tuple[Any, Any]:
        return fn, obs

    def _unwrap(self, fn: Any) -> tuple[Any, tuple[int, ...], int]:
        """``(base, expand_shape, event_dim)`` with ``fn ==
        base.expand(expand_shape).to_event(event_dim - base.event_dim)``."""
        shape = tuple(fn.shape())
        event_dim = fn.event_dim
        while isinstance(fn, dist.Independent | dist.ExpandedDistribution):
            fn = fn.base_dist
        return fn, shape[: len(shape) - fn.event_dim], event_dim

    def _wrap(self, fn: Any, expand_shape: tuple[int, ...], event_dim: int) -> Any:
        """``fn`` expanded to ``expand_shape`` with ``event_dim`` event dims."""
        if fn.event_dim > event_dim:
            raise ValueError(
                f"cannot wrap a distribution with event_dim {fn.event_dim} to {event_dim}."
            )
        fn = fn.expand(expand_shape)
        if fn.event_dim < event_dim:
            fn = fn.to_event(event_dim - fn.event_dim)
        return fn
