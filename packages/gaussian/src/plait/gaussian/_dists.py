"""Gaussian sites: ``Normal`` and ``MultivariateNormal``, through the wrappers plates and
masks put around them (``Independent`` from ``.to_event``, ``ExpandedDistribution``,
``MaskedDistribution``), read as a mean, a square root of the noise and a mask.

numpyro is not imported here: a site can only hold a numpyro distribution once numpyro
has been imported, so the classes are looked up in ``sys.modules``.
"""

import sys
from typing import Any, Literal, NamedTuple

import jax.numpy as jnp
from jax import Array

__all__ = ["GaussianParts", "gaussian_kind", "gaussian_parts", "sample_dtype"]

Kind = Literal["diag", "tril"]


class GaussianParts(NamedTuple):
    """A Gaussian site's distribution, every field broadcast to the site's full shape.

    Attributes:
        loc: the mean, shape ``batch + event``.
        root: ``"diag"``: the standard deviations, shape ``batch + event`` (independent
            elements); ``"tril"``: a square root of the covariance of the last axis, shape
            ``batch + event + (d,)``, blocks along the other axes independent.
        kind: ``"diag"`` or ``"tril"``.
        mask: None (everything counts), or booleans of shape ``batch + event``
            (``"diag"``) or ``batch + event[:-1]`` (``"tril"``).
    """

    loc: Array
    root: Array
    kind: Kind
    mask: Array | None


def _classes() -> Any:
    return sys.modules.get("numpyro.distributions")


def _peel(fn: Any) -> tuple[Any, list[Any]]:
    """The innermost distribution under the wrappers, and the ``MaskedDistribution``s met."""
    nd = _classes()
    masked: list[Any] = []
    while True:
        if isinstance(fn, nd.MaskedDistribution):
            masked.append(fn)
            fn = fn.base_dist
        elif isinstance(fn, nd.ExpandedDistribution | nd.Independent):
            fn = fn.base_dist
        else:
            return fn, masked


def gaussian_kind(fn: Any) -> tuple[Kind, bool] | None:
    """``(kind, masked)`` for a Gaussian distribution, or None for any other.

    ``masked``: some wrapper masks the log density with something other than ``True``.

    Example:
        >>> import numpyro.distributions as dist
        >>> gaussian_kind(dist.Normal(0.0, 1.0).expand((3,)).to_event(1))
        ('diag', False)
        >>> gaussian_kind(dist.Exponential(1.0)) is None
        True
    """
    nd = _classes()
    if nd is None:
        return None
    base, masked = _peel(fn)
    if isinstance(base, nd.Normal):
        kind: Kind = "diag"
    elif isinstance(base, nd.MultivariateNormal):
        kind = "tril"
    else:
        return None
    return kind, any(m._mask is not True for m in masked)


def _mask_to(mask: Any, level: Any, target: tuple[int, ...]) -> Array:
    """A wrapper's mask (over its own batch shape) on ``target``'s leading axes."""
    batch = tuple(level.batch_shape)
    m = jnp.broadcast_to(jnp.asarray(mask, bool), batch)
    m = jnp.reshape(m, batch + (1,) * (len(target) - len(batch)))
    return jnp.broadcast_to(m, target)


def gaussian_parts(fn: Any) -> GaussianParts:
    """The mean, noise square root and mask of a Gaussian distribution (see `gaussian_kind`).

    Example:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> parts = gaussian_parts(dist.Normal(jnp.zeros(2), 3.0).mask(jnp.array([True, False])))
        >>> parts.root.tolist(), parts.mask.tolist()
        ([3.0, 3.0], [True, False])
    """
    nd = _classes()
    full = tuple(fn.batch_shape) + tuple(fn.event_shape)
    base, masked = _peel(fn)
    if isinstance(base, nd.Normal):
        kind: Kind = "diag"
        loc = jnp.broadcast_to(base.loc, full)
        root = jnp.broadcast_to(base.scale, full)
        mask_shape = full
    else:
        kind = "tril"
        d = full[-1]
        loc = jnp.broadcast_to(base.loc, full)
        root = jnp.broadcast_to(base.scale_tril, (*full, d))
        mask_shape = full[:-1]
    mask: Array | None = None
    for wrapper in masked:
        if wrapper._mask is True:
            continue
        m = _mask_to(wrapper._mask, wrapper, mask_shape)
        mask = m if mask is None else mask & m
    return GaussianParts(loc, root, kind, mask)


def sample_dtype(fn: Any) -> Any:
    """The dtype of a draw of ``fn`` (a ``Normal(0, 1)`` of ints draws floats)."""
    import jax

    return jax.eval_shape(lambda: fn.sample(jax.random.key(0))).dtype
