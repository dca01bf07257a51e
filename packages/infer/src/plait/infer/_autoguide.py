"""Automatic guides: ``AutoNormal`` (mean field) and ``AutoDelta`` (MAP)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpyro.distributions as dist
from jax import Array, random
from numpyro.distributions import constraints
from numpyro.distributions.transforms import Transform
from numpyro.distributions.util import periodic_repeat

from plait import PlateFrame, current_stack, param, plate, prng_key, sample
from plait.errors import SiteError
from plait.handlers import block, seed, substitute, trace
from plait.infer._init import InitStrategy, init_to_uniform
from plait.infer._log_density import is_real_support, site_transform
from plait.infer._predictive import Predictive

__all__ = ["AutoDelta", "AutoGuide", "AutoNormal"]


@dataclass(frozen=True)
class _Latent:
    """One latent site of the model, as the prototype trace showed it."""

    transform: Transform
    support: Any
    init_loc: Array  # unconstrained, full plate sizes
    event_dim: int  # of the unconstrained value
    constrained_event_dim: int
    frames: tuple[PlateFrame, ...]


class AutoGuide:
    """Base of the automatic guides: reads the model's latents from one prototype run.

    On its first call the guide runs the model (hidden from outer handlers, seeded with a
    key from the enclosing ``seed``) with ``init_loc_fn`` to find each continuous latent's
    shape, support, plates and initial value. Enumerated discrete sites are left to the
    model (``TraceEnum_ELBO``).

    Args:
        model: the model.
        prefix: the prefix of the guide's param names (``{site}_{prefix}_loc``).
        init_loc_fn: where the guide starts (an init strategy).
    """

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        prefix: str = "auto",
        init_loc_fn: InitStrategy = init_to_uniform,
    ) -> None:
        self.model = model
        self.prefix = prefix
        self.init_loc_fn = init_loc_fn
        self.prototype_trace: dict[str, Any] | None = None
        self._latents: dict[str, _Latent] = {}
        self._plates: dict[str, tuple[int, int | None, int]] = {}

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        key = prng_key() if current_stack() else None
        key = random.key(0) if key is None else key
        with block():
            run = substitute(seed(self.model, key), substitute_fn=self.init_loc_fn)
            tr = trace(run).get_trace(*args, **kwargs)
        full_sizes: dict[str, int] = {}
        for name, site in tr.items():
            if site.type == "plate":
                size, subsample_size = site.args
                full_sizes[name] = size
                self._plates[name] = (size, subsample_size, 0)
        dims: dict[str, int] = {}
        for name, site in tr.items():
            if site.type != "sample" or site.is_observed:
                continue
            for frame in site.cond_indep_stack:
                dims[frame.name] = frame.dim
            support = site.fn.support
            if support.is_discrete:
                if site.infer.get("enumerate") == "parallel":
                    continue
                raise SiteError(
                    name,
                    f"site '{name}' is a discrete latent ({type(site.fn).__name__}); "
                    f"{type(self).__name__} fits continuous latents only. Mark it for "
                    "enumeration (infer={'enumerate': 'parallel'}) and use TraceEnum_ELBO, "
                    "or write the guide by hand.",
                )
            transform = site_transform(site)
            unconstrained = transform.inv(site.value)
            event_dim = site.fn.event_dim + jnp.ndim(unconstrained) - jnp.ndim(site.value)
            for frame in site.cond_indep_stack:
                full = full_sizes.get(frame.name, frame.size)
                if full != frame.size:
                    unconstrained = periodic_repeat(unconstrained, full, frame.dim - event_dim)
            self._latents[name] = _Latent(
                transform,
                support,
                unconstrained,
                int(event_dim),
                int(site.fn.event_dim),
                tuple(site.cond_indep_stack),
            )
        self._plates = {
            name: (size, sub, dims[name])
            for name, (size, sub, _) in self._plates.items()
            if name in dims
        }
        self.prototype_trace = dict(tr)

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Array]:
        """Draw every latent of the model from the guide."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        plates = {
            name: plate(name, size, subsample_size=sub, dim=dim)
            for name, (size, sub, dim) in self._plates.items()
        }
        result: dict[str, Array] = {}
        for name, latent in self._latents.items():
            with ExitStack() as stack:
                for frame in latent.frames:
                    stack.enter_context(plates[frame.name])
                result[name] = self._sample_site(name, latent)
        return result

    def _sample_site(self, name: str, latent: _Latent) -> Array:
        raise NotImplementedError

    def _param_name(self, site: str, what: str) -> str:
        return f"{site}_{self.prefix}_{what}"

    def median(self, params: Mapping[str, Array]) -> dict[str, Array]:
        """The posterior median of each latent under the fitted guide ``params``."""
        raise NotImplementedError

    def sample_posterior(
        self,
        rng_key: Array,
        params: Mapping[str, Array],
        *args: Any,
        sample_shape: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> dict[str, Array]:
        """Draws of the latents from the guide with ``params`` (leading ``sample_shape``)."""
        n = 1
        for s in sample_shape:
            n *= s
        draws = Predictive(self, params=params, num_samples=n, return_sites=list(self._latents))(
            rng_key, *args, **kwargs
        )
        return {k: jnp.reshape(v, sample_shape + v.shape[1:]) for k, v in draws.items()}


class AutoNormal(AutoGuide):
    """A mean-field Normal guide on the unconstrained space of each latent.

    Params ``{site}_{prefix}_loc`` and ``{site}_{prefix}_scale`` (positive) live under the
    site's plates, so subsampled plates subsample them.

    Args:
        model: the model.
        prefix: the param name prefix.
        init_loc_fn: the init strategy for the locations.
        init_scale: the initial scale.

    Example:
        >>> import jax, optax
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import SVI, AutoNormal, Trace_ELBO
        >>> def model():
        ...     sample("s", dist.LogNormal(1.0, 0.2))
        >>> guide = AutoNormal(model)
        >>> svi = SVI(model, guide, optax.adam(0.05), Trace_ELBO())
        >>> params = svi.run(jax.random.key(0), 1000, progress_bar=False).params
        >>> round(float(params["s_auto_loc"]), 1)
        1.0
        >>> bool(abs(guide.median(params)["s"] - 2.718) < 0.2)
        True
    """

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        prefix: str = "auto",
        init_loc_fn: InitStrategy = init_to_uniform,
        init_scale: float = 0.1,
    ) -> None:
        if init_scale <= 0:
            raise ValueError(f"init_scale must be positive, got {init_scale}.")
        self.init_scale = init_scale
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    def _sample_site(self, name: str, latent: _Latent) -> Array:
        loc = param(self._param_name(name, "loc"), latent.init_loc, event_dim=latent.event_dim)
        scale = param(
            self._param_name(name, "scale"),
            jnp.full(jnp.shape(latent.init_loc), self.init_scale),
            constraint=constraints.softplus_positive,
            event_dim=latent.event_dim,
        )
        fn = dist.Normal(loc, scale).to_event(latent.event_dim)
        if is_real_support(latent.support):
            return sample(name, fn)
        return sample(name, dist.TransformedDistribution(fn, latent.transform))

    def median(self, params: Mapping[str, Array]) -> dict[str, Array]:
        return {
            name: latent.transform(params[self._param_name(name, "loc")])
            for name, latent in self._latents.items()
        }


class AutoDelta(AutoGuide):
    """A point-mass guide: SVI with it finds the MAP estimate.

    Each latent is a param ``{site}_{prefix}_loc`` constrained to the site's support.

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

    def _sample_site(self, name: str, latent: _Latent) -> Array:
        value = param(
            self._param_name(name, "loc"),
            latent.transform(latent.init_loc),
            constraint=latent.support,
            event_dim=latent.constrained_event_dim,
        )
        return sample(name, dist.Delta(value, event_dim=latent.constrained_event_dim))

    def median(self, params: Mapping[str, Array]) -> dict[str, Array]:
        return {name: params[self._param_name(name, "loc")] for name in self._latents}
