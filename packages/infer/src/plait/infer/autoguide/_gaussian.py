"""Gaussian guides over the flat latent: diagonal, full-rank and low-rank covariance."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax.numpy as jnp
import numpyro.distributions as dist
from jax import Array, random
from numpyro.distributions import constraints
from numpyro.distributions.transforms import (
    AffineTransform,
    IndependentTransform,
    LowerCholeskyAffine,
    Transform,
)
from numpyro.distributions.util import tri_logabsdet

from plait import param
from plait.infer._init import InitStrategy, init_to_uniform
from plait.infer.autoguide._continuous import AutoContinuous

__all__ = ["AutoDiagonalNormal", "AutoLowRankMultivariateNormal", "AutoMultivariateNormal"]


class _MultivariateNormal(dist.MultivariateNormal):  # type: ignore[misc]
    """NumPyro's ``MultivariateNormal`` whose draws keep their standard-Normal noise
    ``eps`` (the intermediate of ``loc + scale_tril @ eps``): the log density of its own
    draw is ``Normal(0, 1).log_prob(eps) - log|scale_tril|``, with no triangular solve.
    Equal to the generic log density (``scale_tril^-1 (value - loc)`` is ``eps``), and its
    gradient too; a value from elsewhere takes the generic one.

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> d = _MultivariateNormal(jnp.zeros(2), scale_tril=jnp.array([[1.0, 0.0], [0.5, 2.0]]))
        >>> x, intermediates = d.sample_with_intermediates(jax.random.key(0))
        >>> bool(jnp.allclose(d.log_prob(x, intermediates), d.log_prob(x)))
        True
    """

    def sample_with_intermediates(
        self, key: Array, sample_shape: tuple[int, ...] = ()
    ) -> tuple[Array, list[Any]]:
        eps = random.normal(key, shape=sample_shape + self.batch_shape + self.event_shape)
        value = self.loc + jnp.squeeze(jnp.matmul(self.scale_tril, eps[..., None]), axis=-1)
        return value, [eps]

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        return self.sample_with_intermediates(key, sample_shape)[0]

    def log_prob(self, value: Any, intermediates: list[Any] | None = None) -> Array:
        if not intermediates:
            return super().log_prob(value)  # type: ignore[no-any-return]
        eps = intermediates[0]
        dim = self.scale_tril.shape[-1]
        normalize_term = tri_logabsdet(self.scale_tril) + 0.5 * dim * jnp.log(2 * jnp.pi)
        log_prob: Array = -0.5 * jnp.sum(jnp.square(eps), axis=-1) - normalize_term
        return log_prob


def _check_scale(init_scale: float) -> None:
    if init_scale <= 0:
        raise ValueError(f"Expected init_scale > 0. but got {init_scale}")


class AutoDiagonalNormal(AutoContinuous):
    """A Normal guide with a diagonal covariance over the whole unconstrained latent
    space (NumPyro's ``AutoDiagonalNormal``): params ``{prefix}_loc`` and
    ``{prefix}_scale`` (softplus-positive), each of the latent dimension.

    Args:
        model: the model.
        prefix: the param name prefix.
        init_loc_fn: the init strategy.
        init_scale: the initial scale.

    Example:
        >>> import jax, optax
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import SVI, Trace_ELBO
        >>> from plait.infer.autoguide import AutoDiagonalNormal
        >>> def model():
        ...     sample("x", dist.Normal(2.0, 0.5).expand([3]).to_event(1))
        >>> guide = AutoDiagonalNormal(model)
        >>> optimizer = optax.adam(optax.exponential_decay(0.05, 1000, 0.01))
        >>> params = SVI(model, guide, optimizer, Trace_ELBO(num_particles=8)).run(
        ...     jax.random.key(0), 1000, progress_bar=False).params
        >>> params["auto_loc"].shape, bool(jnp.allclose(guide.median(params)["x"], 2.0, atol=0.1))
        ((3,), True)
    """

    scale_constraint = constraints.softplus_positive

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        prefix: str = "auto",
        init_loc_fn: InitStrategy = init_to_uniform,
        init_scale: float = 0.1,
    ) -> None:
        _check_scale(init_scale)
        self._init_scale = init_scale
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    def _get_posterior(self) -> Any:
        loc = param(f"{self.prefix}_loc", self._init_latent)
        scale = param(
            f"{self.prefix}_scale",
            jnp.full(self.latent_dim, self._init_scale),
            constraint=self.scale_constraint,
        )
        return dist.Normal(loc, scale)

    def get_base_dist(self) -> Any:
        return dist.Normal(jnp.zeros(self.latent_dim), 1).to_event(1)

    def get_transform(self, params: Mapping[str, Any]) -> Transform:
        loc = params[f"{self.prefix}_loc"]
        scale = params[f"{self.prefix}_scale"]
        return IndependentTransform(AffineTransform(loc, scale), 1)

    def get_posterior(self, params: Mapping[str, Any]) -> Any:
        """The diagonal Normal posterior of the flat unconstrained latent."""
        transform = self.get_transform(params).base_transform  # type: ignore[attr-defined]
        return dist.Normal(transform.loc, transform.scale)

    def median(self, params: Mapping[str, Any]) -> dict[str, Array]:
        return self._unpack_and_constrain(params[f"{self.prefix}_loc"], params)

    def quantiles(self, params: Mapping[str, Any], quantiles: Iterable[float]) -> dict[str, Array]:
        q = jnp.array(list(quantiles))[..., None]
        return self._unpack_and_constrain(self.get_posterior(params).icdf(q), params)


class AutoMultivariateNormal(AutoContinuous):
    """A full-rank MultivariateNormal guide over the whole unconstrained latent space
    (NumPyro's ``AutoMultivariateNormal``): params ``{prefix}_loc`` and
    ``{prefix}_scale_tril`` (a scaled unit lower Cholesky factor).

    Args:
        model: the model.
        prefix: the param name prefix.
        init_loc_fn: the init strategy.
        init_scale: the initial scale (the diagonal of the initial factor).

    Example:
        >>> from plait import sample
        >>> import numpyro.distributions as dist
        >>> from plait.handlers import seed, trace
        >>> from plait.infer.autoguide import AutoMultivariateNormal
        >>> guide = AutoMultivariateNormal(lambda: sample("x", dist.Normal(0.0, 1.0).expand([2])))
        >>> tr = trace(seed(guide, 0)).get_trace()
        >>> tr["auto_scale_tril"].value.shape
        (2, 2)
    """

    scale_tril_constraint = constraints.scaled_unit_lower_cholesky

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        prefix: str = "auto",
        init_loc_fn: InitStrategy = init_to_uniform,
        init_scale: float = 0.1,
    ) -> None:
        _check_scale(init_scale)
        self._init_scale = init_scale
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    def _get_posterior(self) -> Any:
        loc = param(f"{self.prefix}_loc", self._init_latent)
        scale_tril = param(
            f"{self.prefix}_scale_tril",
            jnp.identity(self.latent_dim) * self._init_scale,
            constraint=self.scale_tril_constraint,
        )
        return _MultivariateNormal(loc, scale_tril=scale_tril)

    def get_base_dist(self) -> Any:
        return dist.Normal(jnp.zeros(self.latent_dim), 1).to_event(1)

    def get_transform(self, params: Mapping[str, Any]) -> Transform:
        return LowerCholeskyAffine(
            params[f"{self.prefix}_loc"], params[f"{self.prefix}_scale_tril"]
        )

    def get_posterior(self, params: Mapping[str, Any]) -> Any:
        """The MultivariateNormal posterior of the flat unconstrained latent."""
        transform = self.get_transform(params)
        return dist.MultivariateNormal(transform.loc, scale_tril=transform.scale_tril)  # type: ignore[attr-defined]

    def median(self, params: Mapping[str, Any]) -> dict[str, Array]:
        return self._unpack_and_constrain(params[f"{self.prefix}_loc"], params)

    def quantiles(self, params: Mapping[str, Any], quantiles: Iterable[float]) -> dict[str, Array]:
        transform: Any = self.get_transform(params)
        q = jnp.array(list(quantiles))[..., None]
        marginal = dist.Normal(transform.loc, jnp.linalg.norm(transform.scale_tril, axis=-1))
        return self._unpack_and_constrain(marginal.icdf(q), params)


class AutoLowRankMultivariateNormal(AutoContinuous):
    """A low-rank-plus-diagonal MultivariateNormal guide over the whole unconstrained
    latent space (NumPyro's ``AutoLowRankMultivariateNormal``): params ``{prefix}_loc``,
    ``{prefix}_cov_factor`` (latent dim x rank) and ``{prefix}_scale``; the covariance is
    ``diag(scale) (W W^T + I) diag(scale)``.

    Args:
        model: the model.
        prefix: the param name prefix.
        init_loc_fn: the init strategy.
        init_scale: the initial scale.
        rank: the rank of the factor (default ``round(sqrt(latent dim))``).

    Example:
        >>> from plait import sample
        >>> import numpyro.distributions as dist
        >>> from plait.handlers import seed, trace
        >>> from plait.infer.autoguide import AutoLowRankMultivariateNormal
        >>> model = lambda: sample("x", dist.Normal(0.0, 1.0).expand([9]))
        >>> tr = trace(seed(AutoLowRankMultivariateNormal(model), 0)).get_trace()
        >>> tr["auto_cov_factor"].value.shape
        (9, 3)
    """

    scale_constraint = constraints.softplus_positive

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        prefix: str = "auto",
        init_loc_fn: InitStrategy = init_to_uniform,
        init_scale: float = 0.1,
        rank: int | None = None,
    ) -> None:
        _check_scale(init_scale)
        self._init_scale = init_scale
        self.rank = rank
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    def _get_posterior(self, *args: Any, **kwargs: Any) -> Any:
        rank = round(self.latent_dim**0.5) if self.rank is None else self.rank
        loc = param(f"{self.prefix}_loc", self._init_latent)
        cov_factor = param(f"{self.prefix}_cov_factor", jnp.zeros((self.latent_dim, rank)))
        scale = param(
            f"{self.prefix}_scale",
            jnp.full(self.latent_dim, self._init_scale),
            constraint=self.scale_constraint,
        )
        return dist.LowRankMultivariateNormal(loc, cov_factor * scale[..., None], scale * scale)

    def get_base_dist(self) -> Any:
        return dist.Normal(jnp.zeros(self.latent_dim), 1).to_event(1)

    def get_transform(self, params: Mapping[str, Any]) -> Transform:
        posterior = self.get_posterior(params)
        return LowerCholeskyAffine(posterior.loc, posterior.scale_tril)

    def get_posterior(self, params: Mapping[str, Any]) -> Any:
        """The low-rank MultivariateNormal posterior of the flat unconstrained latent."""
        loc = params[f"{self.prefix}_loc"]
        cov_factor = params[f"{self.prefix}_cov_factor"]
        scale = params[f"{self.prefix}_scale"]
        return dist.LowRankMultivariateNormal(loc, cov_factor * scale[..., None], scale * scale)

    def median(self, params: Mapping[str, Any]) -> dict[str, Array]:
        return self._unpack_and_constrain(params[f"{self.prefix}_loc"], params)

    def quantiles(self, params: Mapping[str, Any], quantiles: Iterable[float]) -> dict[str, Array]:
        loc = params[f"{self.prefix}_loc"]
        cov_factor = params[f"{self.prefix}_cov_factor"]
        scale = params[f"{self.prefix}_scale"]
        scale = scale * jnp.sqrt(jnp.square(cov_factor).sum(-1) + 1)
        q = jnp.array(list(quantiles))[..., None]
        return self._unpack_and_constrain(dist.Normal(loc, scale).icdf(q), params)
