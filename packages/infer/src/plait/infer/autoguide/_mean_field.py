"""``AutoNormal`` (mean-field Normal, site by site) and ``AutoDelta`` (MAP)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from typing import Any

import jax.numpy as jnp
import numpyro.distributions as dist
from jax import Array
from numpyro.distributions import constraints
from numpyro.distributions.util import periodic_repeat

from plait import param, sample
from plait.handlers import seed
from plait.infer._init import InitStrategy, init_to_median, init_to_uniform
from plait.infer._log_density import is_real_support
from plait.infer.autoguide._base import AutoGuide
from plait.infer.autoguide._prototype import is_latent

__all__ = ["AutoDelta", "AutoNormal"]


class _SiteGuide(AutoGuide):
    """An autoguide with one distribution per latent site, under the site's plates."""

    def __init__(self, model: Callable[..., Any], **options: Any) -> None:
        self._event_dims: dict[str, int] = {}
        super().__init__(model, **options)

    def _repeat_to_full_size(self, name: str, site: Any, event_dim: int) -> None:
        """Subsampled plates: repeat the initial value up to the plate's full size."""
        for frame in site.cond_indep_stack:
            full_size = self._prototype_frame_full_sizes[frame.name]
            if full_size != frame.size:
                self._init_locs[name] = periodic_repeat(
                    self._init_locs[name], full_size, frame.dim - event_dim
                )

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Array]:
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        assert self.prototype_trace is not None
        plates = self._create_plates(*args, **kwargs)
        result: dict[str, Array] = {}
        for name, site in self.prototype_trace.items():
            if not is_latent(site):
                continue
            with ExitStack() as stack:
                for frame in site.cond_indep_stack:
                    stack.enter_context(plates[frame.name])
                result[name] = self._sample_site(name, site)
        return result

    def _sample_site(self, name: str, site: Any) -> Array:
        raise NotImplementedError

    def _param_name(self, site: str, what: str) -> str:
        return f"{site}_{self.prefix}_{what}"


class AutoNormal(_SiteGuide):
    """A mean-field Normal guide on the unconstrained space of each latent (NumPyro's
    ``AutoNormal``).

    Params ``{site}_{prefix}_loc`` and ``{site}_{prefix}_scale`` (softplus-positive) live
    under the site's plates, so a subsampled plate subsamples them.

    Args:
        model: the model.
        prefix: the param name prefix.
        init_loc_fn: the init strategy for the locations.
        init_scale: the initial scale.
        create_plates: a function of the model's arguments returning the plates to use.
        forward_mode_differentiation: accepted for NumPyro compatibility.

    Raises:
        ValueError: ``init_scale`` is not positive.

    Example:
        >>> import jax, optax
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import SVI, AutoNormal, Trace_ELBO
        >>> def model():
        ...     sample("s", dist.LogNormal(1.0, 0.2))
        >>> guide = AutoNormal(model)
        >>> optimizer = optax.adam(optax.exponential_decay(0.05, 1000, 0.01))
        >>> svi = SVI(model, guide, optimizer, Trace_ELBO(num_particles=8))
        >>> params = svi.run(jax.random.key(0), 1000, progress_bar=False).params
        >>> bool(abs(params["s_auto_loc"] - 1.0) < 0.05)
        True
        >>> bool(abs(guide.median(params)["s"] - 2.718) < 0.2)
        True
    """

    scale_constraint = constraints.softplus_positive

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        prefix: str = "auto",
        init_loc_fn: InitStrategy = init_to_uniform,
        init_scale: float = 0.1,
        create_plates: Callable[..., Any] | None = None,
        forward_mode_differentiation: bool = False,
    ) -> None:
        if init_scale <= 0:
            raise ValueError(f"Expected init_scale > 0. but got {init_scale}")
        self._init_scale = init_scale
        super().__init__(
            model,
            prefix=prefix,
            init_loc_fn=init_loc_fn,
            create_plates=create_plates,
            forward_mode_differentiation=forward_mode_differentiation,
        )

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        super()._setup_prototype(*args, **kwargs)
        assert self.prototype_trace is not None
        for name, site in self.prototype_trace.items():
            if not is_latent(site):
                continue
            event_dim = site.fn.event_dim + jnp.ndim(self._init_locs[name]) - jnp.ndim(site.value)
            self._event_dims[name] = int(event_dim)
            self._repeat_to_full_size(name, site, int(event_dim))

    def _sample_site(self, name: str, site: Any) -> Array:
        event_dim = self._event_dims[name]
        init_loc = self._init_locs[name]
        loc = param(self._param_name(name, "loc"), init_loc, event_dim=event_dim)
        scale = param(
            self._param_name(name, "scale"),
            jnp.full(jnp.shape(init_loc), self._init_scale),
            constraint=self.scale_constraint,
            event_dim=event_dim,
        )
        fn = dist.Normal(loc, scale).to_event(event_dim)
        if is_real_support(site.fn.support):
            return sample(name, fn)
        assert self._prototype is not None
        return sample(name, dist.TransformedDistribution(fn, self._prototype.transforms[name]))

    def _locs_scales(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        locs = {k: params[self._param_name(k, "loc")] for k in self._init_locs}
        scales = {k: params[self._param_name(k, "scale")] for k in locs}
        return locs, scales

    def sample_posterior(
        self,
        rng_key: Array,
        params: Mapping[str, Any],
        *args: Any,
        sample_shape: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> dict[str, Array]:
        locs, scales = self._locs_scales(params)
        with seed(rng_seed=rng_key):
            latent = {
                k: sample(k, dist.Normal(locs[k], scales[k]).expand_by(sample_shape)) for k in locs
            }
        return self._complete(latent, params, len(sample_shape), args, kwargs, constrain=True)

    def median(self, params: Mapping[str, Any]) -> dict[str, Array]:
        locs, _ = self._locs_scales(params)
        return self._complete(locs, params, 0, (), {}, constrain=True)

    def quantiles(self, params: Mapping[str, Any], quantiles: Iterable[float]) -> dict[str, Array]:
        q = jnp.array(list(quantiles))
        locs, scales = self._locs_scales(params)
        latent = {
            k: dist.Normal(locs[k], scales[k]).icdf(q.reshape((-1,) + (1,) * jnp.ndim(locs[k])))
            for k in locs
        }
        return self._complete(latent, params, 1, (), {}, constrain=True)


class AutoDelta(_SiteGuide):
    """A point-mass guide: SVI with it finds the MAP estimate (NumPyro's ``AutoDelta``).

    Each latent is a param ``{site}_{prefix}_loc`` constrained to the site's support
    (MAP in the constrained space), under the site's plates.

    Args:
        model: the model.
        prefix: the param name prefix.
        init_loc_fn: the init strategy (default ``init_to_median``).
        create_plates: a function of the model's arguments returning the plates to use.
        forward_mode_differentiation: accepted for NumPyro compatibility.

    Example:
        >>> import jax, optax
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import SVI, AutoDelta, Trace_ELBO
        >>> def model():
        ...     sample("s", dist.Gamma(3.0, 2.0))  # mode (3 - 1) / 2 = 1
        >>> svi = SVI(model, AutoDelta(model), optax.adam(0.05), Trace_ELBO())
        >>> params = svi.run(jax.random.key(0), 1000, progress_bar=False).params
        >>> round(float(params["s_auto_loc"]), 2)
        1.0
    """

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        prefix: str = "auto",
        init_loc_fn: InitStrategy = init_to_median,
        create_plates: Callable[..., Any] | None = None,
        forward_mode_differentiation: bool = False,
    ) -> None:
        super().__init__(
            model,
            prefix=prefix,
            init_loc_fn=init_loc_fn,
            create_plates=create_plates,
            forward_mode_differentiation=forward_mode_differentiation,
        )

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        super()._setup_prototype(*args, **kwargs)
        assert self.prototype_trace is not None
        model_params = {n: s.value for n, s in self.prototype_trace.items() if s.type == "param"}
        constrained = self._complete(
            self._init_locs, model_params, 0, args, kwargs, constrain=True, full_size=False
        )
        self._init_locs = {k: v for k, v in constrained.items() if k in self._init_locs}
        for name, site in self.prototype_trace.items():
            if not is_latent(site):
                continue
            event_dim = int(site.fn.event_dim)
            self._event_dims[name] = event_dim
            self._repeat_to_full_size(name, site, event_dim)

    def _sample_site(self, name: str, site: Any) -> Array:
        event_dim = self._event_dims[name]
        loc = param(
            self._param_name(name, "loc"),
            self._init_locs[name],
            constraint=site.fn.support,
            event_dim=event_dim,
        )
        return sample(name, dist.Delta(loc).to_event(event_dim))

    def sample_posterior(
        self,
        rng_key: Array,
        params: Mapping[str, Any],
        *args: Any,
        sample_shape: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> dict[str, Array]:
        locs = {k: params[self._param_name(k, "loc")] for k in self._init_locs}
        latent = {k: jnp.broadcast_to(v, sample_shape + jnp.shape(v)) for k, v in locs.items()}
        return self._complete(latent, params, len(sample_shape), args, kwargs, constrain=False)

    def median(self, params: Mapping[str, Any]) -> dict[str, Array]:
        return {k: params[self._param_name(k, "loc")] for k in self._init_locs}
