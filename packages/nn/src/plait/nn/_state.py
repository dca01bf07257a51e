"""``ModuleState``: a network's mutable state (batch-norm statistics) in a ``mutable`` site."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import jax
import jax.numpy as jnp

from plait import mutable
from plait.errors import SiteAssertionError

__all__ = ["ModuleState", "declare_state"]

S = TypeVar("S")


def _stop_gradient(x: Any) -> Any:
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.inexact):
        return jax.lax.stop_gradient(x)
    return x


class ModuleState(Generic[S]):
    """The state of the network ``name``, held in the ``mutable`` site ``f"{name}$state"``
    as ``{"state": value}`` (NumPyro's layout, so ``substitute`` can set it and the trace
    shows the state after the run).

    Read it with ``.value``; assigning ``.value`` records the new state (without
    gradient, as statistics are not fitted by gradient).

    Example:
        >>> import jax.numpy as jnp
        >>> from plait.handlers import trace
        >>> from plait.nn import ModuleState
        >>> from plait.nn._state import declare_state
        >>> with trace() as tr:
        ...     state = declare_state("net", {"mean": jnp.zeros(2)})
        ...     state.value = {"mean": jnp.ones(2)}
        >>> tr["net$state"].value["state"]["mean"]
        Array([1., 1.], dtype=float32)
    """

    __slots__ = ("_holder",)

    def __init__(self, holder: dict[str, Any]) -> None:
        self._holder = holder

    @property
    def value(self) -> S:
        """The current state."""
        value: S = self._holder["state"]
        return value

    @value.setter
    def value(self, new: S) -> None:
        self._holder["state"] = jax.tree.map(_stop_gradient, new)


def declare_state(name: str, initial: S) -> ModuleState[S]:
    """The ``mutable`` site ``f"{name}$state"``, holding ``initial`` unless substituted."""
    site = f"{name}$state"
    holder = mutable(site, {"state": initial})
    if not isinstance(holder, dict) or "state" not in holder:
        raise SiteAssertionError(
            site,
            f"site '{site}' holds {type(holder).__name__}, not a dict with key 'state': "
            f"substitute it as {{'{site}': {{'state': new_state}}}}.",
        )
    return ModuleState(holder)
