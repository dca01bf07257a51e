"""``AutoContinuous``: guides over the whole latent space, flattened into one vector."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax import Array
from numpyro.distributions.transforms import ComposeTransform, Transform, UnpackTransform
from numpyro.distributions.util import sum_rightmost

from plait import get_mask, sample
from plait.handlers import seed, substitute
from plait.infer.autoguide._base import AutoGuide

__all__ = ["AutoContinuous", "ravel_dict", "unravel_dict"]


def unravel_dict(x_flat: Array, shape_dict: Mapping[str, tuple[int, ...]]) -> dict[str, Array]:
    """The dict of arrays of shapes ``shape_dict`` packed (in order) in ``x_flat``.

    Example:
        >>> import jax.numpy as jnp
        >>> {k: v.shape for k, v in unravel_dict(jnp.arange(5.0), {"a": (2,), "b": (3,)}).items()}
        {'a': (2,), 'b': (3,)}
    """
    out: dict[str, Array] = {}
    pos = 0
    for name, shape in shape_dict.items():
        size = int(np.prod(shape))
        out[name] = x_flat[pos : pos + size].reshape(shape)
        pos += size
    if pos != x_flat.shape[0]:
        raise ValueError(f"unravel_dict: {x_flat.shape[0]} values for {pos} entries.")
    return out


def ravel_dict_with_shapes(
    x: Mapping[str, Array], shape_dict: Mapping[str, tuple[int, ...]]
) -> Array:
    """The values of ``x`` flattened and concatenated in the order of ``shape_dict``."""
    if set(x) != set(shape_dict):
        raise ValueError(f"ravel_dict: sites {sorted(x)} do not match {sorted(shape_dict)}.")
    flat = [jnp.reshape(x[name], -1) for name in shape_dict]
    return jnp.concatenate(flat) if flat else jnp.zeros((0,))


def ravel_dict(x: Mapping[str, Array]) -> tuple[Array, dict[str, tuple[int, ...]]]:
    """``x`` flattened into one vector, and the shapes to unflatten it."""
    shapes = {name: tuple(jnp.shape(value)) for name, value in x.items()}
    return ravel_dict_with_shapes(x, shapes), shapes


class AutoContinuous(AutoGuide):
    """Base of the guides over the whole unconstrained latent space as one vector
    (ADVI, Kucukelbir et al. 2017; NumPyro's ``AutoContinuous``).

    The guide samples an auxiliary site ``_{prefix}_latent`` from its posterior, unpacks
    it into the latents and gives each site a ``Delta`` at its constrained value with the
    log-Jacobian of the transform. Every latent must be global (no subsampled plate).
    Subclasses define ``_get_posterior``.
    """

    latent_dim: int

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        super()._setup_prototype(*args, **kwargs)
        self._init_latent, shape_dict = ravel_dict(self._init_locs)
        self._shape_dict = shape_dict
        self._unpack_latent = UnpackTransform(
            partial(unravel_dict, shape_dict=shape_dict), ravel_dict_with_shapes
        )
        self.latent_dim = int(jnp.size(self._init_latent))
        if self.latent_dim == 0:
            raise RuntimeError(
                f"{type(self).__name__} found no latent variables; Use an empty guide instead"
            )
        assert self.prototype_trace is not None
        for name, site in self.prototype_trace.items():
            if site.type == "sample" and not site.is_observed:
                for frame in site.cond_indep_stack:
                    if frame.size != self._prototype_frame_full_sizes[frame.name]:
                        raise ValueError(
                            "AutoContinuous guide does not support local latent variables: "
                            f"site '{name}' is inside the subsampled plate '{frame.name}'. Use "
                            "AutoNormal, or AutoSemiDAIS, for local latents."
                        )

    def _get_posterior(self) -> Any:
        raise NotImplementedError

    def _sample_latent(
        self, *args: Any, sample_shape: tuple[int, ...] = (), **kwargs: Any
    ) -> Array:
        posterior = self._get_posterior()
        return sample(
            f"_{self.prefix}_latent",
            posterior.expand_by(sample_shape),
            infer={"is_auxiliary": True},
        )

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Array]:
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        assert self.prototype_trace is not None and self._prototype is not None
        latent = self._sample_latent(*args, **kwargs)
        result: dict[str, Array] = {}
        for name, unconstrained_value in self._unpack_latent(latent).items():
            site = self.prototype_trace[name]
            transform = self._prototype.transforms[name]
            value = transform(unconstrained_value)
            event_ndim = site.fn.event_dim
            if get_mask() is False:
                log_density: Any = 0.0
            else:
                log_density = -transform.log_abs_det_jacobian(unconstrained_value, value)
                log_density = sum_rightmost(
                    log_density, jnp.ndim(log_density) - jnp.ndim(value) + event_ndim
                )
            delta = dist.Delta(value, log_density=log_density, event_dim=event_ndim)
            result[name] = sample(name, delta)
        return result

    def _unpack_and_constrain(
        self,
        latent_sample: Array,
        params: Mapping[str, Any],
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> dict[str, Array]:
        """The constrained latents (and deterministic sites) of flat latent draws."""
        unpacked = self._unpack_latent(latent_sample)
        batch_ndims = jnp.ndim(latent_sample) - 1
        return self._complete(unpacked, params, batch_ndims, args, kwargs or {}, constrain=True)

    def get_base_dist(self) -> Any:
        """The base distribution of the posterior written as a transformed distribution."""
        raise NotImplementedError

    def get_transform(self, params: Mapping[str, Any]) -> Transform:
        """The transform from :meth:`get_base_dist` to the (unconstrained) posterior."""
        posterior = substitute(self._get_posterior, data=params)()
        if not isinstance(posterior, dist.TransformedDistribution):
            raise TypeError(f"{type(self).__name__}'s posterior is not a transformed distribution.")
        if len(posterior.transforms) > 0:
            return ComposeTransform(posterior.transforms)
        return posterior.transforms[0]  # type: ignore[no-any-return]

    def get_posterior(self, params: Mapping[str, Any]) -> Any:
        """The posterior distribution of the flat unconstrained latent."""
        return dist.TransformedDistribution(self.get_base_dist(), self.get_transform(params))

    def sample_posterior(
        self,
        rng_key: Array,
        params: Mapping[str, Any],
        *args: Any,
        sample_shape: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> dict[str, Array]:
        draw: Callable[..., Array] = substitute(seed(self._sample_latent, rng_key), data=params)
        latent_sample = draw(sample_shape=sample_shape)
        return self._unpack_and_constrain(latent_sample, params, args, kwargs)
