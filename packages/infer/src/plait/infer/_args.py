"""Split a model's arguments into traced arrays and static Python values.

Compiled inference functions take the model's arrays as arguments (so new data of the same
shape reuses the compiled code) and its other values (sizes, flags, strings) as a hashable
static key (so a new size recompiles, as it must).
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

__all__ = [
    "CONCRETE_VALUE_ERRORS",
    "StaticArgs",
    "args_digest",
    "merge_args",
    "split_args",
]


class _ById:
    """Hash and compare an unhashable static value by identity."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ById) and other.value is self.value


@dataclass(frozen=True)
class StaticArgs:
    """The static part of ``(args, kwargs)``: the tree structure and the non-array leaves."""

    treedef: Any
    dynamic_positions: tuple[int, ...]
    static_leaves: tuple[Hashable, ...]


def _is_dynamic(leaf: Any) -> bool:
    if isinstance(leaf, bool | int | str | bytes):
        return False
    return isinstance(leaf, jax.Array | np.ndarray | np.generic | float | complex)


def _hashable(leaf: Any) -> Hashable:
    try:
        hash(leaf)
    except TypeError:
        return _ById(leaf)
    return leaf  # type: ignore[no-any-return]


def split_args(
    args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> tuple[tuple[Any, ...], StaticArgs]:
    """``(arrays, static)``: the array leaves of ``(args, kwargs)`` and the rest.

    Example:
        >>> import jax.numpy as jnp
        >>> dynamic, static = split_args((jnp.ones(2), 3), {"flag": True})
        >>> len(dynamic), merge_args(dynamic, static)[1]
        (1, {'flag': True})
    """
    leaves, treedef = jax.tree_util.tree_flatten((tuple(args), dict(kwargs)))
    dynamic = tuple(leaf for leaf in leaves if _is_dynamic(leaf))
    positions = tuple(i for i, leaf in enumerate(leaves) if _is_dynamic(leaf))
    static = tuple(_hashable(leaf) for leaf in leaves if not _is_dynamic(leaf))
    return dynamic, StaticArgs(treedef, positions, static)


def merge_args(
    dynamic: tuple[Any, ...], static: StaticArgs
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The ``(args, kwargs)`` that :func:`split_args` split."""
    n = len(dynamic) + len(static.static_leaves)
    dyn = iter(dynamic)
    rest = iter(static.static_leaves)
    positions = set(static.dynamic_positions)
    leaves = [next(dyn) if i in positions else _unwrap(next(rest)) for i in range(n)]
    args, kwargs = jax.tree_util.tree_unflatten(static.treedef, leaves)
    return tuple(args), dict(kwargs)


def _unwrap(leaf: Hashable) -> Any:
    return leaf.value if isinstance(leaf, _ById) else leaf


CONCRETE_VALUE_ERRORS: tuple[type[Exception], ...] = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
)
"""What JAX raises when a model reads a concrete value from a traced argument
(``int(np.max(y))``, ``if y.sum() > 0:``): then the arguments must be constants."""


def args_digest(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Hashable:
    """A key equal for arguments of equal content (array bytes, shapes and dtypes, the
    other leaves by value or identity), for caching programs that hold them as constants.

    Example:
        >>> import numpy as np
        >>> args_digest((np.ones(3),), {}) == args_digest((np.ones(3),), {})
        True
        >>> args_digest((np.ones(3),), {}) == args_digest((np.zeros(3),), {})
        False
    """
    leaves, treedef = jax.tree_util.tree_flatten((tuple(args), dict(kwargs)))
    h = hashlib.sha1(usedforsecurity=False)
    others: list[Hashable] = []
    for leaf in leaves:
        if isinstance(leaf, jax.Array | np.ndarray | np.generic):
            arr = np.asarray(leaf)
            h.update(f"{arr.dtype}{arr.shape}".encode())
            h.update(arr.tobytes())
        else:
            others.append(_hashable(leaf) if not isinstance(leaf, float) else ("float", leaf))
    return (treedef, h.hexdigest(), tuple(others))
