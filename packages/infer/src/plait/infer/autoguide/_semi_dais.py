"""``AutoSemiDAIS``: a parametric guide for the global latents and DAIS for the local
latents of one subsampled plate."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax import Array, lax, random
from numpyro.distributions import constraints
from numpyro.distributions.transforms import UnpackTransform, biject_to
from numpyro.distributions.util import sum_rightmost

from plait import Trace, factor, get_mask, param, plate, sample
from plait.handlers import block, seed, substitute, trace
from plait.infer._init import init_to_uniform
from plait.infer._log_density import potential_energy
from plait.infer.autoguide._base import AutoGuide
from plait.infer.autoguide._continuous import ravel_dict, unravel_dict
from plait.infer.autoguide._dais import check_dais_options

__all__ = ["AutoSemiDAIS"]


class _SemiDAISPlateError(ValueError, AssertionError):
    """Not exactly one subsampled plate (an ``AssertionError`` in NumPyro)."""


def _subsample_model(model: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    data = kwargs.pop("_subsample_idx", {})
    with substitute(data=data):
        return model(*args, **kwargs)


class AutoSemiDAIS(AutoGuide):
    """A parametric guide for the global latents and DAIS for the local ones (Jankowiak
    and Phan 2022, Geffner and Domke 2021; NumPyro's ``AutoSemiDAIS``), with data
    subsampling: the model has one subsampled plate holding its local latents.

    Args:
        model: the model (global and local latents).
        local_model: the part of the model with the local latents; it takes the global
            model's return value (or the model's arguments without a global guide).
        global_guide: a guide for the global latents (e.g. an autoguide of the global
            model), or ``None`` when there are none.
        local_guide: a guide for the local latents that sets the DAIS base distribution
            (default: a diagonal Normal per data point).
        prefix: the param name prefix.
        K: the number of Hamiltonian steps.
        eta_init: the initial step size.
        eta_max: the largest step size.
        gamma_init: the initial momentum damping, in (0, 1).
        init_scale: the initial scale of the local base Normal.
        subsample_plate: the name of the local plate, when it does not subsample.
        use_global_dais_params: share the DAIS parameters among the data points.
        forward_mode_differentiation: accepted for NumPyro compatibility.

    Example:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import plate, sample
        >>> from plait.handlers import seed, trace
        >>> from plait.infer.autoguide import AutoNormal, AutoSemiDAIS
        >>> def global_model():
        ...     return sample("theta", dist.Normal(0.0, 1.0))
        >>> def local_model(theta):
        ...     with plate("data", 8, subsample_size=2):
        ...         tau = sample("tau", dist.Gamma(5.0, 5.0))
        ...         sample("obs", dist.Normal(theta, tau), obs=jnp.ones(2))
        >>> model = lambda: local_model(global_model())
        >>> guide = AutoSemiDAIS(model, local_model, AutoNormal(global_model), K=2)
        >>> trace(seed(guide, 0)).get_trace()["tau"].value.shape
        (2,)
    """

    def __init__(
        self,
        model: Callable[..., Any],
        local_model: Callable[..., Any],
        global_guide: Callable[..., Any] | None = None,
        local_guide: Callable[..., Any] | None = None,
        *,
        prefix: str = "auto",
        K: int = 4,  # noqa: N803 (NumPyro's name)
        eta_init: float = 0.01,
        eta_max: float = 0.1,
        gamma_init: float = 0.9,
        init_scale: float = 0.1,
        subsample_plate: str | None = None,
        use_global_dais_params: bool = False,
        forward_mode_differentiation: bool = False,
    ) -> None:
        super().__init__(
            model,
            prefix=prefix,
            init_loc_fn=init_to_uniform,
            forward_mode_differentiation=forward_mode_differentiation,
        )
        check_dais_options(K, eta_init, eta_max, gamma_init, init_scale)
        self.local_model = local_model
        self.global_guide = global_guide
        self.local_guide = local_guide
        self.eta_init = eta_init
        self.eta_max = eta_max
        self.gamma_init = gamma_init
        self.K = K
        self.init_scale = init_scale
        self.subsample_plate = subsample_plate
        self.use_global_dais_params = use_global_dais_params

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        super()._setup_prototype(*args, **kwargs)
        tr = self.prototype_trace
        assert tr is not None
        plates = {
            n: s
            for n, s in tr.items()
            if s.type == "plate" and isinstance(s.args[1], int) and s.args[0] > s.args[1]
        }
        if self.subsample_plate is not None:
            plates[self.subsample_plate] = tr[self.subsample_plate]
        elif not plates:
            plates = {n: s for n, s in tr.items() if s.type == "plate"}
        if len(plates) != 1:
            raise _SemiDAISPlateError(
                f"AutoSemiDAIS assumes that the model contains exactly 1 plate with data "
                f"subsampling but got {len(plates)} ({sorted(plates)}); name the local plate "
                "with subsample_plate=..."
            )
        plate_name = next(iter(plates))
        local_vars: list[str] = []
        axes: dict[str, int] = {}
        plate_dim: int | None = None
        for name, site in tr.items():
            if site.type == "sample" and not site.is_observed:
                for frame in site.cond_indep_stack:
                    if frame.name == plate_name:
                        plate_dim = frame.dim if plate_dim is None else plate_dim
                        local_vars.append(name)
                        axes[name] = plate_dim - site.fn.event_dim
                        break
        if not local_vars:
            raise RuntimeError(
                f"There are no local variables in the `{plate_name}` plate. AutoSemiDAIS is "
                "appropriate for models with local variables."
            )
        local_init = {n: v for n, v in self._init_locs.items() if n in local_vars}
        one = {k: jnp.take(v, 0, axis=axes[k]) for k, v in local_init.items()}
        _, shape_dict = ravel_dict(one)
        self._pack_local_latent: Callable[[Mapping[str, Array]], Array] = jax.vmap(
            lambda x: ravel_dict(x)[0], in_axes=(axes,)
        )
        local_init_latent = self._pack_local_latent(local_init)
        self._unpack_local_latent = jax.vmap(
            UnpackTransform(partial(unravel_dict, shape_dict=shape_dict)), out_axes=axes
        )
        full_size, subsample_size = plates[plate_name].args
        subsample_size = full_size if subsample_size is None else subsample_size
        self._local_latent_dim = int(jnp.size(local_init_latent)) // subsample_size
        self._local_plate = (plate_name, full_size, subsample_size)
        if self.global_guide is not None:
            with block():
                local_args: tuple[Any, ...] = (self.global_guide.model(*args, **kwargs),)  # type: ignore[attr-defined]
            local_kwargs: dict[str, Any] = {}
        else:
            local_args, local_kwargs = args, dict(kwargs)
        if self.local_guide is not None:
            with block(), trace() as guide_tr:
                self.local_guide(*local_args, **local_kwargs)
            self.prototype_local_guide_trace: Trace = guide_tr
        with block(), trace() as model_tr:
            self.local_model(*local_args, **local_kwargs)
        self.prototype_local_model_trace: Trace = model_tr

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Array]:
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        assert self.prototype_trace is not None
        global_latents, local_flat = self._sample_latent(*args, **kwargs)
        result = dict(global_latents)
        _, full_size, subsample_size = self._local_plate
        for name, unconstrained_value in self._unpack_local_latent(local_flat).items():
            site = self.prototype_trace[name]
            transform = biject_to(site.fn.support)
            value = transform(unconstrained_value)
            event_ndim = site.fn.event_dim
            if get_mask() is False:
                log_density: Any = 0.0
            else:
                log_density = -transform.log_abs_det_jacobian(unconstrained_value, value)
                log_density = (full_size / subsample_size) * sum_rightmost(
                    log_density, jnp.ndim(log_density) - jnp.ndim(value) + event_ndim
                )
            result[name] = sample(
                name, dist.Delta(value, log_density=log_density, event_dim=event_ndim)
            )
        return result

    def _dais_params(self, n: int, k: int, d: int, idx: Array) -> tuple[Array, ...]:
        """Step size, its slope, damping, schedule and mass matrix for the subsample."""
        p = self.prefix
        interval = constraints.interval(0, self.eta_max)
        if self.use_global_dais_params:
            eta0 = param(f"{p}_eta0", self.eta_init, constraint=interval)
            eta_coeff = param(f"{p}_eta_coeff", 0.0)
            gamma = param(f"{p}_gamma", 0.9, constraint=constraints.interval(0, 1))
            betas = param(f"{p}_beta_increments", jnp.ones(k), constraint=constraints.positive)
            mass = param(f"{p}_mass_matrix", jnp.ones(d), constraint=constraints.positive)
            shape = idx.shape
            return (
                jnp.broadcast_to(eta0, shape),
                jnp.broadcast_to(eta_coeff, shape),
                jnp.broadcast_to(gamma, shape),
                jnp.broadcast_to(betas, (*shape, k)),
                jnp.broadcast_to(mass, (*shape, d)),
            )
        return (
            param(f"{p}_eta0", jnp.ones(n) * self.eta_init, constraint=interval, event_dim=0),
            param(f"{p}_eta_coeff", jnp.zeros(n), event_dim=0),
            param(
                f"{p}_gamma", jnp.ones(n) * 0.9, constraint=constraints.interval(0, 1), event_dim=0
            ),
            param(
                f"{p}_beta_increments",
                jnp.ones((n, k)),
                constraint=constraints.positive,
                event_dim=1,
            ),
            param(
                f"{p}_mass_matrix", jnp.ones((n, d)), constraint=constraints.positive, event_dim=1
            ),
        )

    def _sample_latent(self, *args: Any, **kwargs: Any) -> tuple[dict[str, Array], Array]:
        kwargs.pop("sample_shape", ())
        if self.global_guide is not None:
            global_latents = self.global_guide(*args, **kwargs)
            with block(), substitute(data=global_latents):
                global_outputs = self.global_guide.model(*args, **kwargs)  # type: ignore[attr-defined]
            local_args: tuple[Any, ...] = (global_outputs,)
            local_kwargs: dict[str, Any] = {}
        else:
            global_latents = {}
            local_args, local_kwargs = args, dict(kwargs)
        local_guide_params = {}
        if self.local_guide is not None:
            for name, site in self.prototype_local_guide_trace.items():
                if site.type == "param":
                    local_guide_params[name] = param(name, site.value, **site.kwargs)
        local_model_params = {}
        for name, site in self.prototype_local_model_trace.items():
            if site.type == "param":
                local_model_params[name] = param(name, site.value, **site.kwargs)

        plate_name, n, subsample_size = self._local_plate
        d, k = self._local_latent_dim, self.K
        with plate(plate_name, n, subsample_size=subsample_size) as idx:
            eta0, eta_coeff, gamma, betas, mass_matrix = self._dais_params(n, k, d, idx)
            betas = jnp.cumsum(betas, axis=-1)
            betas = betas / betas[..., -1:]
            inv_mass_matrix = 0.5 / mass_matrix
            local_kwargs["_subsample_idx"] = {plate_name: idx}
            z_0, base_log_prob = self._local_base(
                local_args, local_kwargs, local_guide_params, n, subsample_size, d
            )
            momentum_dist = dist.Normal(0, mass_matrix).to_event(1)
            eps = sample(
                f"{self.prefix}_momentum",
                dist.Normal(0, mass_matrix[..., None])
                .expand([subsample_size, d, k])
                .to_event(2)
                .mask(False),
                infer={"is_auxiliary": True},
            )

            def local_log_density(x: Array) -> Array:
                latent = self._unpack_local_latent(x)
                with block():
                    return -potential_energy(
                        partial(_subsample_model, self.local_model),
                        local_args,
                        local_kwargs,
                        {**latent, **local_model_params},
                    )

            def body(carry: tuple[Array, Array, Array], eps_beta: tuple[Array, Array]) -> Any:
                eps_k, beta = eps_beta
                eta = jnp.clip(eta0 + eta_coeff * beta, 0.0, self.eta_max)
                z_prev, v_prev, log_factor = carry
                z_half = z_prev + v_prev * eta[:, None] * inv_mass_matrix
                q_grad = (1.0 - beta[:, None]) * jax.grad(base_log_prob)(z_half)
                p_grad = beta[:, None] * (subsample_size / n) * jax.grad(local_log_density)(z_half)
                v_hat = v_prev + eta[:, None] * (q_grad + p_grad)
                z = z_half + v_hat * eta[:, None] * inv_mass_matrix
                v = gamma[:, None] * v_hat + jnp.sqrt(1 - gamma[:, None] ** 2) * eps_k
                delta_ke = momentum_dist.log_prob(v_prev) - momentum_dist.log_prob(v_hat)
                return (z, v, log_factor + delta_ke), None

            v_0 = eps[:, :, -1]  # the result does not depend on eps[:, :, -1]
            (z, _, log_factor), _ = lax.scan(
                body,
                (z_0, v_0, jnp.zeros(subsample_size)),
                (jnp.moveaxis(eps, -1, 0), betas.T),
            )
            factor(f"{self.prefix}_local_dais_factor", log_factor)
            return global_latents, z

    def _local_base(
        self,
        local_args: tuple[Any, ...],
        local_kwargs: dict[str, Any],
        local_guide_params: Mapping[str, Any],
        n: int,
        subsample_size: int,
        d: int,
    ) -> tuple[Array, Callable[[Array], Array]]:
        """The DAIS start for the subsample and its base log density."""
        if self.local_guide is not None:
            subsample_guide = partial(_subsample_model, self.local_guide)
            with block(), trace() as tr, substitute(data=local_guide_params):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    subsample_guide(*local_args, **local_kwargs)
                latent = {
                    name: biject_to(site.fn.support).inv(site.value)
                    for name, site in tr.items()
                    if site.type == "sample" and not site.is_observed
                }
                z_0 = self._pack_local_latent(latent)

            def base_log_prob(z: Array) -> Array:
                values = self._unpack_local_latent(z)
                with block(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    scale = n / subsample_size
                    return (  # type: ignore[no-any-return]
                        -potential_energy(
                            subsample_guide,
                            local_args,
                            local_kwargs,
                            {**local_guide_params, **values},
                        )
                        / scale
                    )

            # Run inside the subsampled plate, the factor broadcasts to the subsample.
            factor(f"{self.prefix}_z_0_factor", base_log_prob(z_0) / subsample_size)
            return z_0, base_log_prob
        z_0_loc = param(f"{self.prefix}_z_0_loc", jnp.zeros((n, d)), event_dim=1)
        z_0_scale = param(
            f"{self.prefix}_z_0_scale",
            jnp.ones((n, d)) * self.init_scale,
            constraint=constraints.positive,
            event_dim=1,
        )
        base = dist.Normal(z_0_loc, z_0_scale).to_event(1)
        z_0 = sample(f"{self.prefix}_z_0", base, infer={"is_auxiliary": True})

        def normal_log_prob(x: Array) -> Array:
            total: Array = base.log_prob(x).sum()
            return total

        return z_0, normal_log_prob

    def sample_posterior(
        self,
        rng_key: Array,
        params: Mapping[str, Any],
        *args: Any,
        sample_shape: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> dict[str, Array]:
        """Draws of the global latents and of the local latents of one subsample
        (substitute the plate's indices to choose it)."""
        assert self.prototype_trace is not None

        def single(key: Array) -> dict[str, Array]:
            draw: Callable[..., Any] = substitute(seed(self._sample_latent, key), data=params)
            global_latents, local_flat = draw(*args, **kwargs)
            results = dict(global_latents)
            prototype = self.prototype_trace
            assert prototype is not None
            for name, value in self._unpack_local_latent(local_flat).items():
                results[name] = biject_to(prototype[name].fn.support)(value)
            return results

        if not sample_shape:
            return single(rng_key)
        keys = random.split(rng_key, int(np.prod(sample_shape)))
        samples = lax.map(single, keys)
        out: dict[str, Array] = jax.tree.map(
            lambda x: jnp.reshape(x, sample_shape + jnp.shape(x)[1:]), samples
        )
        return out
