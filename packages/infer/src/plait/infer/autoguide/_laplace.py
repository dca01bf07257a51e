"""``AutoLaplaceApproximation``: a MAP point and the inverse Hessian around it."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax import Array, random
from numpyro.distributions.transforms import LowerCholeskyAffine, Transform
from numpyro.distributions.util import cholesky_of_inverse

from plait import param
from plait.infer._elbo import Trace_ELBO
from plait.infer._init import InitStrategy, init_to_uniform
from plait.infer.autoguide._continuous import AutoContinuous

__all__ = ["AutoLaplaceApproximation"]


class AutoLaplaceApproximation(AutoContinuous):
    r"""The Laplace (quadratic) approximation (NumPyro's ``AutoLaplaceApproximation``).

    SVI fits a ``Delta`` guide at the MAP point of the unconstrained latent (param
    ``{prefix}_loc``); :meth:`get_posterior` is then the MultivariateNormal whose
    precision is the Hessian of :math:`-\log p(x, z)` there.

    Args:
        model: the model.
        prefix: the param name prefix.
        init_loc_fn: the init strategy.
        create_plates: a function of the model's arguments returning the plates to use.
        hessian_fn: ``(f, x) -> hessian of f at x`` (default ``jax.hessian(f)(x)``); add
            a small ridge there when the Hessian is singular.

    Example:
        >>> import jax, optax
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import SVI, Trace_ELBO
        >>> from plait.infer.autoguide import AutoLaplaceApproximation
        >>> def model():
        ...     sample("x", dist.Normal(1.0, 0.5).expand([2]).to_event(1))
        >>> guide = AutoLaplaceApproximation(model)
        >>> params = SVI(model, guide, optax.adam(0.1), Trace_ELBO()).run(
        ...     jax.random.key(0), 500, progress_bar=False).params
        >>> cov = guide.get_posterior(params).covariance_matrix
        >>> bool(jnp.allclose(cov, 0.25 * jnp.eye(2), atol=1e-3))
        True
    """

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        prefix: str = "auto",
        init_loc_fn: InitStrategy = init_to_uniform,
        create_plates: Callable[..., Any] | None = None,
        hessian_fn: Callable[[Callable[[Array], Array], Array], Array] | None = None,
    ) -> None:
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn, create_plates=create_plates)
        self._hessian_fn = (
            hessian_fn if hessian_fn is not None else (lambda f, x: jax.hessian(f)(x))
        )

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        super()._setup_prototype(*args, **kwargs)

        def loss_fn(params: Mapping[str, Any]) -> Array:
            # Maximum a posteriori: one particle, any key.
            return Trace_ELBO().loss(  # type: ignore[return-value]
                random.key(0), params, self.model, self, *args, **kwargs
            )

        self._loss_fn = loss_fn

    def _get_posterior(self, *args: Any, **kwargs: Any) -> Any:
        loc = param(f"{self.prefix}_loc", self._init_latent)
        return dist.Delta(loc, event_dim=1)

    def get_base_dist(self) -> Any:
        return dist.Normal(jnp.zeros(self.latent_dim), 1).to_event(1)

    def get_transform(self, params: Mapping[str, Any]) -> Transform:
        name = f"{self.prefix}_loc"

        def loss_fn(z: Array) -> Array:
            return self._loss_fn({**params, name: z})

        loc = params[name]
        precision = self._hessian_fn(loss_fn, loc)
        scale_tril = cholesky_of_inverse(precision)
        if not isinstance(scale_tril, jax.core.Tracer) and np.any(np.isnan(scale_tril)):
            warnings.warn(
                "Hessian of log posterior at the MAP point is singular. Posterior samples "
                "from AutoLaplaceApproxmiation will be constant (equal to the MAP point). "
                "Please consider using an AutoNormal guide.",
                stacklevel=2,
            )
        scale_tril = jnp.where(jnp.isnan(scale_tril), 0.0, scale_tril)
        return LowerCholeskyAffine(loc, scale_tril)

    def get_posterior(self, params: Mapping[str, Any]) -> Any:
        """The MultivariateNormal Laplace approximation of the flat unconstrained latent."""
        transform: Any = self.get_transform(params)
        return dist.MultivariateNormal(
            transform.loc, scale_tril=transform.scale_tril, validate_args=False
        )

    def sample_posterior(
        self,
        rng_key: Array,
        params: Mapping[str, Any],
        *args: Any,
        sample_shape: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> dict[str, Array]:
        latent_sample = self.get_posterior(params).sample(rng_key, sample_shape)
        return self._unpack_and_constrain(latent_sample, params, args, kwargs)

    def median(self, params: Mapping[str, Any]) -> dict[str, Array]:
        return self._unpack_and_constrain(params[f"{self.prefix}_loc"], params)

    def quantiles(self, params: Mapping[str, Any], quantiles: Iterable[float]) -> dict[str, Array]:
        transform: Any = self.get_transform(params)
        q = jnp.array(list(quantiles))[..., None]
        marginal = dist.Normal(transform.loc, jnp.linalg.norm(transform.scale_tril, axis=-1))
        return self._unpack_and_constrain(marginal.icdf(q), params)
