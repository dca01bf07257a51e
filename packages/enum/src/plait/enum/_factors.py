"""Log-factors with named axes: the currency of tensor variable elimination.

A :class:`Factor` is a log-valued array whose axes are named: an enumerated variable, a
plate, or a batch axis that is carried along (the time axis of a ``scan``). Its
``ordinal`` is the set of plates it lives in, whether or not it varies along them.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import jax.numpy as jnp
from jax import Array

from plait.kernels import logsumexp_einsum, max_einsum

__all__ = ["Factor", "align", "einsum", "select", "total"]

_LETTERS = string.ascii_letters


@dataclass(frozen=True)
class Factor:
    """A log-valued ``array`` with one name per axis, inside the plates ``ordinal``.

    Example:
        >>> import jax.numpy as jnp
        >>> f = Factor(jnp.zeros((2, 3)), ("z", "data"), frozenset({"data"}))
        >>> f.sizes
        {'z': 2, 'data': 3}
    """

    array: Array
    axes: tuple[str, ...]
    ordinal: frozenset[str] = frozenset()

    @property
    def sizes(self) -> dict[str, int]:
        return dict(zip(self.axes, self.array.shape, strict=True))


def align(array: Array, axes: Sequence[str], target: Sequence[str]) -> Array:
    """``array`` (axes named ``axes``) transposed and reshaped to ``target``'s axes.

    Axes of ``target`` that ``array`` lacks get size 1; ``axes`` must be a subset.

    Example:
        >>> import jax.numpy as jnp
        >>> align(jnp.zeros((2, 3)), ("a", "b"), ("b", "c", "a")).shape
        (3, 1, 2)
    """
    axes = tuple(axes)
    present = [a for a in target if a in axes]
    if len(present) != len(axes):
        missing = sorted(set(axes) - set(target))
        raise ValueError(f"axes {missing} are not in the target {tuple(target)}")
    perm = [axes.index(a) for a in present]
    if perm != list(range(len(perm))):
        array = jnp.transpose(array, perm)
    sizes = dict(zip(present, array.shape, strict=True))
    shape = tuple(sizes.get(a, 1) for a in target)
    return array if shape == array.shape else jnp.reshape(array, shape)


def _union(axes: Iterable[Sequence[str]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a for group in axes for a in group))


def einsum(
    factors: Sequence[Factor],
    out_axes: Sequence[str],
    semiring: str = "log",
    ordinal: frozenset[str] | None = None,
) -> Factor:
    """Contract ``factors`` in the log (sum-product) or max (max-product) semiring.

    Axes absent from ``out_axes`` are summed (or maximised) out; the others are kept.
    """
    factors = _merge_nested(factors)
    names = _union(f.axes for f in factors)
    letter = {a: _LETTERS[k] for k, a in enumerate(names)}
    dtype = jnp.result_type(*(f.array.dtype for f in factors))
    equation = (
        ",".join("".join(letter[a] for a in f.axes) for f in factors)
        + "->"
        + "".join(letter[a] for a in out_axes)
    )
    arrays = [f.array.astype(dtype) for f in factors]
    kernel = logsumexp_einsum if semiring == "log" else max_einsum
    out = kernel(equation, *arrays)
    if ordinal is None:
        ordinal = frozenset().union(*(f.ordinal for f in factors))
    return Factor(out, tuple(out_axes), ordinal)


def _merge_nested(factors: Sequence[Factor]) -> list[Factor]:
    """Add each factor into a larger one whose axes contain its axes (exact in log space).

    Fewer, larger operands for the einsum; and no einsum step then multiplies operands
    without summing anything out (a step whose exponentials could underflow).
    """
    groups: list[list[Factor]] = []
    for f in sorted(factors, key=lambda f: -len(f.axes)):
        for group in groups:
            if set(f.axes) <= set(group[0].axes):
                group.append(f)
                break
        else:
            groups.append([f])
    return [g[0] if len(g) == 1 else total(g, g[0].ordinal) for g in groups]


def total(factors: Sequence[Factor], ordinal: frozenset[str] | None = None) -> Factor:
    """The sum of log-factors (their product), over the union of their axes."""
    axes = _union(f.axes for f in factors)
    out = sum(
        (align(f.array, f.axes, axes) for f in factors[1:]),
        align(factors[0].array, factors[0].axes, axes),
    )
    sizes: dict[str, int] = {}
    for f in factors:
        sizes.update(f.sizes)
    shape = tuple(sizes[a] for a in axes)
    out = jnp.broadcast_to(out, shape)
    if ordinal is None:
        ordinal = frozenset().union(*(f.ordinal for f in factors))
    return Factor(out, axes, ordinal)


def select(factor: Factor, values: Mapping[str, Factor]) -> Factor:
    """``factor`` evaluated at the integer ``values`` of some of its variables.

    Each value is a :class:`Factor` of indices whose axes (plates, batch axes) broadcast
    against the factor's; the result has the factor's other axes and the values' axes.
    """
    chosen = [a for a in factor.axes if a in values]
    if not chosen:
        return factor
    rest = tuple(a for a in factor.axes if a not in values)
    extra = _union(values[a].axes for a in chosen)
    out_axes = rest + tuple(a for a in extra if a not in rest)
    array = align(factor.array, factor.axes, out_axes + tuple(chosen))
    sizes = dict(factor.sizes)
    for a in chosen:
        sizes.update(values[a].sizes)
    shape = tuple(sizes[a] for a in out_axes)
    array = jnp.broadcast_to(array, shape + array.shape[len(out_axes) :])
    for k in range(len(chosen)):
        idx = align(values[chosen[k]].array, values[chosen[k]].axes, out_axes)
        idx = jnp.broadcast_to(idx, shape)
        # Take along the first remaining chosen axis (right after the kept ones).
        array = jnp.take_along_axis(
            array, idx[(...,) + (None,) * (len(chosen) - k)], axis=len(out_axes)
        )
        array = jnp.squeeze(array, axis=len(out_axes))
    return Factor(array, out_axes, factor.ordinal)
