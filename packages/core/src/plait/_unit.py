"""``Unit``: the empty-valued distribution that carries a ``factor``'s log weight."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import Array, lax

__all__ = ["Unit"]


@jax.tree_util.register_pytree_node_class
class Unit:
    """A distribution over empty values whose ``log_prob`` is a given ``log_factor``.

    Batch shape is ``log_factor``'s shape; event shape is ``(0,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> u = Unit(jnp.array([1.0, 2.0]))
        >>> u.log_prob(jnp.zeros((2, 0)))
        Array([1., 2.], dtype=float32)
    """

    has_enumerate_support = False
    support = None
    event_dim = 1

    def __init__(self, log_factor: Any) -> None:
        self.log_factor = jnp.asarray(log_factor)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.log_factor.shape)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (0,)

    def sample(self, key: Array | None = None, sample_shape: tuple[int, ...] = ()) -> Array:
        return jnp.empty(tuple(sample_shape) + self.batch_shape + (0,), self.log_factor.dtype)

    def log_prob(self, value: Any) -> Array:
        shape = lax.broadcast_shapes(self.batch_shape, jnp.shape(value)[:-1])
        return jnp.broadcast_to(self.log_factor, shape)

    def expand(self, batch_shape: tuple[int, ...]) -> Unit:
        return Unit(jnp.broadcast_to(self.log_factor, tuple(batch_shape)))

    def mask(self, mask: Any) -> Unit:
        return Unit(jnp.where(mask, self.log_factor, jnp.zeros((), self.log_factor.dtype)))

    def tree_flatten(self) -> tuple[tuple[Array], None]:
        return (self.log_factor,), None

    @classmethod
    def tree_unflatten(cls, aux: None, children: tuple[Array]) -> Unit:
        unit = cls.__new__(cls)
        unit.log_factor = children[0]
        return unit
