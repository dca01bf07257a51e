"""Batched Gaussian guides: one (low-rank) MultivariateNormal per leading batch index."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpyro.distributions as dist
from jax import Array
from numpyro.distributions import constraints
from numpyro.distributions.transforms import ReshapeTransform

from plait import param
from plait.infer._init import InitStrategy, init_to_uniform
from plait.infer.autoguide._continuous import AutoContinuous

__all__ = ["AutoBatchedLowRankMultivariateNormal", "AutoBatchedMultivariateNormal"]


class _AutoBatched(AutoContinuous):
    """Reads the batch shape (the ``batch_ndim`` leading dims every latent shares) and
    reshapes the flat latent to ``batch_shape + (latent_dim / batch_size,)``."""

    def __init__(self, model: Callable[..., Any], *, batch_ndim: int, **options: Any) -> None:
        self.batch_ndim = batch_ndim
        self._batch_shape: tuple[int, ...] = ()
        self._event_shape: tuple[int, ...] = ()
        super().__init__(model, **options)

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        super()._setup_prototype(*args, **kwargs)
        assert self.prototype_trace is not None
        batch_shape: tuple[int, ...] | None = None
        for name, site in self.prototype_trace.items():
            if site.type != "sample" or site.is_observed:
                continue
            shape = tuple(jnp.shape(site.value))
            if len(shape) < self.batch_ndim + site.fn.event_dim:
                raise ValueError(
                    f"Expected {self.batch_ndim} batch dimensions, but site `{name}` only has "
                    f"shape {shape}."
                )
            if batch_shape is None:
                batch_shape = shape[: self.batch_ndim]
            elif shape[: self.batch_ndim] != batch_shape:
                raise ValueError(
                    f"Encountered inconsistent batch shapes: site `{name}` has "
                    f"{shape[: self.batch_ndim]}, an earlier site {batch_shape}."
                )
        self._batch_shape = batch_shape or ()
        batch_size = math.prod(self._batch_shape)
        if self.latent_dim % batch_size:
            raise RuntimeError(
                f"Incompatible batch shape {self._batch_shape} (size {batch_size}) and "
                f"latent dims {self.latent_dim}."
            )
        self._event_shape = (self.latent_dim // batch_size,)

    def _get_batched_posterior(self) -> Any:
        raise NotImplementedError

    def _get_posterior(self) -> Any:
        return dist.TransformedDistribution(
            self._get_batched_posterior(), self._get_reshape_transform()
        )

    def _get_reshape_transform(self) -> ReshapeTransform:
        return ReshapeTransform((self.latent_dim,), self._batch_shape + self._event_shape)

    def median(self, params: Mapping[str, Any]) -> dict[str, Array]:
        loc = self._get_reshape_transform()(params[f"{self.prefix}_loc"])
        return self._unpack_and_constrain(loc, params)


class AutoBatchedMultivariateNormal(_AutoBatched):
    """Independent full-rank MultivariateNormals, one per batch index of the latents'
    ``batch_ndim`` leading dims (NumPyro's ``AutoBatchedMultivariateNormal``).

    Args:
        model: the model.
        prefix: the param name prefix.
        init_loc_fn: the init strategy.
        init_scale: the initial scale.
        batch_ndim: the number of leading batch dims shared by every latent.

    Example:
        >>> from plait import sample
        >>> import numpyro.distributions as dist
        >>> from plait.handlers import seed, trace
        >>> from plait.infer.autoguide import AutoBatchedMultivariateNormal
        >>> model = lambda: sample("x", dist.Normal(0.0, 1.0).expand([4, 3]).to_event(1))
        >>> tr = trace(seed(AutoBatchedMultivariateNormal(model), 0)).get_trace()
        >>> tr["auto_scale_tril"].value.shape
        (4, 3, 3)
    """

    scale_tril_constraint = constraints.scaled_unit_lower_cholesky

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        prefix: str = "auto",
        init_loc_fn: InitStrategy = init_to_uniform,
        init_scale: float = 0.1,
        batch_ndim: int = 1,
    ) -> None:
        if init_scale <= 0:
            raise ValueError(f"Expected init_scale > 0. but got {init_scale}")
        self._init_scale = init_scale
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn, batch_ndim=batch_ndim)

    def _get_batched_posterior(self) -> Any:
        init_latent = self._init_latent.reshape(self._batch_shape + self._event_shape)
        loc = param(f"{self.prefix}_loc", init_latent)
        init_scale = (
            jnp.ones((*self._batch_shape, 1, 1))
            * jnp.identity(init_latent.shape[-1])
            * self._init_scale
        )
        scale_tril = param(
            f"{self.prefix}_scale_tril", init_scale, constraint=self.scale_tril_constraint
        )
        return dist.MultivariateNormal(loc, scale_tril=scale_tril)


class AutoBatchedLowRankMultivariateNormal(_AutoBatched):
    """Independent low-rank MultivariateNormals, one per batch index of the latents'
    ``batch_ndim`` leading dims (NumPyro's ``AutoBatchedLowRankMultivariateNormal``).

    Args:
        model: the model.
        prefix: the param name prefix.
        init_loc_fn: the init strategy.
        init_scale: the initial scale.
        rank: the rank of each factor (default ``round(sqrt(event size))``).
        batch_ndim: the number of leading batch dims shared by every latent.

    Example:
        >>> from plait import sample
        >>> import numpyro.distributions as dist
        >>> from plait.handlers import seed, trace
        >>> from plait.infer.autoguide import AutoBatchedLowRankMultivariateNormal
        >>> model = lambda: sample("x", dist.Normal(0.0, 1.0).expand([4, 9]).to_event(1))
        >>> tr = trace(seed(AutoBatchedLowRankMultivariateNormal(model), 0)).get_trace()
        >>> tr["auto_cov_factor"].value.shape
        (4, 9, 3)
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
        batch_ndim: int = 1,
    ) -> None:
        if init_scale <= 0:
            raise ValueError(f"Expected init_scale > 0. but got {init_scale}")
        self._init_scale = init_scale
        self.rank = rank
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn, batch_ndim=batch_ndim)

    def _get_batched_posterior(self) -> Any:
        rank = round(self._event_shape[0] ** 0.5) if self.rank is None else self.rank
        init_latent = self._init_latent.reshape(self._batch_shape + self._event_shape)
        loc = param(f"{self.prefix}_loc", init_latent)
        cov_factor = param(
            f"{self.prefix}_cov_factor",
            jnp.zeros(self._batch_shape + self._event_shape + (rank,)),
        )
        scale = param(
            f"{self.prefix}_scale",
            jnp.full(self._batch_shape + self._event_shape, self._init_scale),
            constraint=self.scale_constraint,
        )
        return dist.LowRankMultivariateNormal(loc, cov_factor * scale[..., None], scale * scale)
