"""Reparameterisers through transforms: ``TransformReparam``, ``ExplicitReparam`` and the
unit-Jacobian time reparameterisers ``HaarReparam`` and ``DiscreteCosineReparam``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpyro.distributions as dist
from numpyro.distributions import biject_to
from numpyro.distributions.transforms import (
    ComposeTransform,
    DiscreteCosineTransform,
    HaarTransform,
    Transform,
)

from plait import sample
from plait.errors import SiteError
from plait.infer.reparam._base import Reparam, refuse_observed

__all__ = [
    "DiscreteCosineReparam",
    "ExplicitReparam",
    "HaarReparam",
    "TransformReparam",
    "UnitJacobianReparam",
]


class TransformReparam(Reparam):
    """Sample a ``TransformedDistribution`` latent from its base distribution
    (``{name}_base``) and push the draw through the transforms; the site becomes
    deterministic (NumPyro's ``TransformReparam``). Latent sites only.

    Example:
        >>> import numpyro.distributions as dist
        >>> from numpyro.distributions.transforms import ExpTransform
        >>> from plait import sample
        >>> from plait.handlers import reparam, seed, trace
        >>> from plait.infer.reparam import TransformReparam
        >>> def model():
        ...     sample("x", dist.TransformedDistribution(dist.Normal(0.0, 1.0), ExpTransform()))
        >>> tr = trace(seed(reparam(model, config={"x": TransformReparam()}), 0)).get_trace()
        >>> list(tr), tr["x"].type
        (['x_base', 'x'], 'deterministic')
    """

    def __call__(self, name: str, fn: Any, obs: Any) -> tuple[Any, Any]:
        refuse_observed("TransformReparam", name, obs)
        fn, expand_shape, event_dim = self._unwrap(fn)
        if not isinstance(fn, dist.TransformedDistribution):
            raise SiteError(
                name,
                f"TransformReparam does not automatically work with {type(fn).__name__} "
                "distribution anymore. Please explicitly using "
                "TransformedDistribution(base_dist, AffineTransform(...)) pattern with "
                "TransformReparam.",
            )
        base_event_dim = event_dim
        for t in reversed(fn.transforms):
            base_event_dim += t.domain.event_dim - t.codomain.event_dim
        x = sample(f"{name}_base", self._wrap(fn.base_dist, expand_shape, base_event_dim))
        for t in fn.transforms:
            x = t(x)
        return None, x


class ExplicitReparam(Reparam):
    """Sample a latent ``x`` as ``y = transform(x)`` (``{name}_base``) and return
    ``transform.inv(y)``: a change of variables chosen outside the model (NumPyro's
    ``ExplicitReparam``).

    Args:
        transform: a bijection (or a sequence of them, composed).

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import reparam, seed, trace
        >>> from plait.infer.reparam import ExplicitReparam
        >>> model = lambda: sample("x", dist.Gamma(4.0, 4.0))
        >>> config = {"x": ExplicitReparam(dist.transforms.SoftplusTransform().inv)}
        >>> tr = trace(seed(reparam(model, config=config), 0)).get_trace()
        >>> list(tr)
        ['x_base', 'x']
    """

    def __init__(self, transform: Transform | Iterable[Transform]) -> None:
        if isinstance(transform, Iterable) and all(isinstance(t, Transform) for t in transform):
            transform = ComposeTransform(list(transform))
        self.transform = transform

    def __call__(self, name: str, fn: Any, obs: Any) -> tuple[Any, Any]:
        refuse_observed("ExplicitReparam", name, obs)
        x = sample(f"{name}_base", dist.TransformedDistribution(fn, self.transform))
        return None, self.transform.inv(x)  # type: ignore[union-attr]


class UnitJacobianReparam(Reparam):
    """Sample a latent in the space ``y = transform(biject_to(support).inv(x))`` of a
    transform with unit Jacobian determinant (``{name}_{suffix}``); the log density is
    unchanged (NumPyro's ``UnitJacobianReparam``). The transformed axis must be an event
    dim.

    Args:
        transform: a transform whose Jacobian determinant is one.
        suffix: the suffix of the auxiliary site's name.
    """

    def __init__(self, transform: Transform, suffix: str = "transformed") -> None:
        self.transform = transform
        self.suffix = suffix

    def __call__(self, name: str, fn: Any, obs: Any) -> tuple[Any, Any]:
        refuse_observed(type(self).__name__, name, obs)
        fn, expand_shape, event_dim = self._unwrap(fn)
        transform = ComposeTransform([biject_to(fn.support).inv, self.transform])
        base_event_dim = max(event_dim, self.transform.domain.event_dim)
        x = sample(
            f"{name}_{self.suffix}",
            dist.TransformedDistribution(self._wrap(fn, expand_shape, base_event_dim), transform),
        )
        return None, transform.inv(x)


class HaarReparam(UnitJacobianReparam):
    """Reparameterise a sequence-valued latent in the Haar wavelet basis
    (``{name}_haar``; NumPyro's ``HaarReparam``), which decorrelates long-range coupling
    along a time-like event axis.

    Args:
        dim: the (negative) event dim to transform.
        flip: flip the axis before the transform.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import reparam, seed, trace
        >>> from plait.infer.reparam import HaarReparam
        >>> model = lambda: sample("x", dist.Normal(0.0, 1.0).expand([8]).to_event(1))
        >>> tr = trace(seed(reparam(model, config={"x": HaarReparam()}), 0)).get_trace()
        >>> list(tr), tr["x"].value.shape
        (['x_haar', 'x'], (8,))
    """

    def __init__(self, dim: int = -1, flip: bool = False) -> None:
        super().__init__(HaarTransform(dim=dim, flip=flip), suffix="haar")


class DiscreteCosineReparam(UnitJacobianReparam):
    """Reparameterise a sequence-valued latent in the discrete cosine basis
    (``{name}_dct``; NumPyro's ``DiscreteCosineReparam``); ``smooth=1`` for latents about
    continuous along time, ``2`` for about continuously differentiable ones.

    Args:
        dim: the (negative) event dim to transform.
        smooth: the smoothing exponent (0: white noise to white noise).

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import reparam, seed, trace
        >>> from plait.infer.reparam import DiscreteCosineReparam
        >>> model = lambda: sample("x", dist.Normal(0.0, 1.0).expand([8]).to_event(1))
        >>> config = {"x": DiscreteCosineReparam(smooth=1.0)}
        >>> list(trace(seed(reparam(model, config=config), 0)).get_trace())
        ['x_dct', 'x']
    """

    def __init__(self, dim: int = -1, smooth: float = 0.0) -> None:
        super().__init__(DiscreteCosineTransform(dim=dim, smooth=smooth), suffix="dct")
