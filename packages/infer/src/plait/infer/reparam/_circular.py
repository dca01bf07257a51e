"""Reparameterisers of latents on the circle and the sphere: ``CircularReparam`` and
``ProjectedNormalReparam``."""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.util import safe_normalize

from plait import factor, sample
from plait.errors import SiteError
from plait.infer.reparam._base import Reparam, refuse_observed

__all__ = ["CircularReparam", "ProjectedNormalReparam"]


class CircularReparam(Reparam):
    """Sample a circular latent (``VonMises``) on the real line (``{name}_unwrapped``,
    an improper uniform), wrap it to ``[-pi, pi)`` and add its log density as the factor
    ``{name}_factor`` (NumPyro's ``CircularReparam``), so gradient-based inference sees no
    boundary.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import reparam, substitute, trace
        >>> from plait.infer.reparam import CircularReparam
        >>> model = lambda: sample("x", dist.VonMises(0.0, 2.0))
        >>> unwrapped = substitute(model, data={"x_unwrapped": 7.0})  # improper: no draws
        >>> tr = trace(reparam(unwrapped, config={"x": CircularReparam()})).get_trace()
        >>> list(tr), round(float(tr["x"].value), 4)  # 7 - 2 pi
        (['x_unwrapped', 'x_factor', 'x'], 0.7168)
    """

    def __call__(self, name: str, fn: Any, obs: Any) -> tuple[Any, Any]:
        support = fn.support
        if isinstance(support, constraints.independent):
            support = support.base_constraint
        if support is not constraints.circular:
            raise SiteError(
                name,
                f"CircularReparam at site '{name}' needs a circular support (VonMises, say), "
                f"got {support}.",
            )
        refuse_observed("CircularReparam", name, obs)
        new_fn = dist.ImproperUniform(constraints.real, fn.batch_shape, fn.event_shape)
        value = sample(f"{name}_unwrapped", new_fn, obs=obs)
        value = jnp.remainder(value + math.pi, 2 * math.pi) - math.pi
        factor(f"{name}_factor", fn.log_prob(value))
        return None, value


class ProjectedNormalReparam(Reparam):
    """Sample a ``ProjectedNormal`` latent as a parameter-free Normal
    (``{name}_normal``) shifted by the concentration and normalised onto the sphere
    (NumPyro's ``ProjectedNormalReparam``).

    Example:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import reparam, seed, trace
        >>> from plait.infer.reparam import ProjectedNormalReparam
        >>> model = lambda: sample("x", dist.ProjectedNormal(jnp.array([1.0, 0.0, 0.0])))
        >>> config = {"x": ProjectedNormalReparam()}
        >>> x = trace(seed(reparam(model, config=config), 0)).get_trace()["x"].value
        >>> round(float(jnp.linalg.norm(x)), 5)
        1.0
    """

    def __call__(self, name: str, fn: Any, obs: Any) -> tuple[Any, Any]:
        refuse_observed("ProjectedNormalReparam", name, obs)
        fn, expand_shape, event_dim = self._unwrap(fn)
        if not isinstance(fn, dist.ProjectedNormal):
            raise SiteError(
                name,
                f"ProjectedNormalReparam at site '{name}' needs a ProjectedNormal, got "
                f"{type(fn).__name__}.",
            )
        new_fn = dist.Normal(jnp.zeros(fn.concentration.shape), 1).to_event(1)
        x = sample(f"{name}_normal", self._wrap(new_fn, expand_shape, event_dim))
        return None, safe_normalize(x + fn.concentration)
