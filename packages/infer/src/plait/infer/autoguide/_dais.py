"""``AutoDAIS`` and ``AutoSurrogateLikelihoodDAIS``: a Gaussian base pushed through K
steps of uncorrected, annealed Hamiltonian dynamics (differentiable annealed importance
sampling)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax import Array, lax, random
from numpyro.distributions import constraints

from plait import factor, param, prng_key, sample
from plait.handlers import block, seed, substitute
from plait.infer._init import InitStrategy, init_to_uniform
from plait.infer.autoguide._continuous import AutoContinuous
from plait.infer.autoguide._prototype import Prototype, find_prototype

__all__ = ["AutoDAIS", "AutoSurrogateLikelihoodDAIS", "check_dais_options", "dais_chain"]


def check_dais_options(
    k: int, eta_init: float, eta_max: float, gamma_init: float, init_scale: float
) -> None:
    """Raise ``ValueError`` for DAIS options out of range (NumPyro's checks)."""
    if k < 1:
        raise ValueError(f"K must satisfy K >= 1 (got K = {k})")
    if eta_init <= 0.0 or eta_init >= eta_max:
        raise ValueError("eta_init must be positive and satisfy eta_init < eta_max.")
    if eta_max <= 0.0:
        raise ValueError("eta_max must be positive.")
    if gamma_init <= 0.0 or gamma_init >= 1.0:
        raise ValueError("gamma_init must be in the open interval (0, 1).")
    if init_scale <= 0.0:
        raise ValueError("init_scale must be positive.")


def dais_chain(
    z_0: Array,
    eps: Array,
    betas: Array,
    eta0: Array,
    eta_coeff: Array,
    eta_max: float,
    gamma: Array,
    mass_matrix: Array,
    base_log_prob: Callable[[Array], Array],
    target_log_prob: Callable[[Array], Array],
) -> tuple[Array, Array]:
    """K annealed leapfrog steps from ``z_0``: the final point and the log weight
    (the kinetic energy changes), Geffner and Domke 2021, as NumPyro computes them."""
    inv_mass_matrix = 0.5 / mass_matrix
    momentum_dist = dist.Normal(0, mass_matrix).to_event()

    def body(carry: tuple[Array, Array, Array], eps_beta: tuple[Array, Array]) -> Any:
        eps_k, beta = eps_beta
        eta = jnp.clip(eta0 + eta_coeff * beta, 0.0, eta_max)
        z_prev, v_prev, log_factor = carry
        z_half = z_prev + v_prev * eta * inv_mass_matrix
        q_grad = (1.0 - beta) * jax.grad(base_log_prob)(z_half)
        p_grad = beta * jax.grad(target_log_prob)(z_half)
        v_hat = v_prev + eta * (q_grad + p_grad)
        z = z_half + v_hat * eta * inv_mass_matrix
        v = gamma * v_hat + jnp.sqrt(1 - gamma**2) * eps_k
        delta_ke = momentum_dist.log_prob(v_prev) - momentum_dist.log_prob(v_hat)
        return (z, v, log_factor + delta_ke), None

    v_0 = eps[-1]  # the result does not depend on eps[-1]
    (z, _, log_factor), _ = lax.scan(body, (z_0, v_0, jnp.asarray(0.0)), (eps, betas))
    return z, log_factor


class AutoDAIS(AutoContinuous):
    """Differentiable annealed importance sampling over the whole latent space (Geffner
    and Domke 2021, Zhang et al. 2021; NumPyro's ``AutoDAIS``): a diagonal or full-rank
    Normal base, then ``K`` uncorrected Hamiltonian steps annealed towards the posterior,
    with learnt step size, damping, schedule and mass matrix. No data subsampling.

    Args:
        model: the model.
        K: the number of Hamiltonian steps.
        base_dist: ``"diagonal"`` or ``"cholesky"`` covariance of the base Normal.
        eta_init: the initial step size.
        eta_max: the largest step size.
        gamma_init: the initial momentum damping, in (0, 1).
        prefix: the param name prefix.
        init_loc_fn: the init strategy.
        init_scale: the initial scale of the base Normal.
        forward_mode_differentiation: accepted for NumPyro compatibility.

    Raises:
        ValueError: an option out of range.
        NotImplementedError: the model subsamples a plate.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import seed, trace
        >>> from plait.infer.autoguide import AutoDAIS
        >>> model = lambda: sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        >>> tr = trace(seed(AutoDAIS(model, K=3), 0)).get_trace()
        >>> tr["auto_momentum"].value.shape, tr["x"].value.shape
        ((3, 2), (2,))
    """

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        K: int = 4,  # noqa: N803 (NumPyro's name)
        base_dist: str = "diagonal",
        eta_init: float = 0.01,
        eta_max: float = 0.1,
        gamma_init: float = 0.9,
        prefix: str = "auto",
        init_loc_fn: InitStrategy = init_to_uniform,
        init_scale: float = 0.1,
        forward_mode_differentiation: bool = False,
    ) -> None:
        check_dais_options(K, eta_init, eta_max, gamma_init, init_scale)
        if base_dist not in ("diagonal", "cholesky"):
            raise ValueError('base_dist must be one of "diagonal" or "cholesky".')
        self.eta_init = eta_init
        self.eta_max = eta_max
        self.gamma_init = gamma_init
        self.K = K
        self.base_dist = base_dist
        self._init_scale = init_scale
        super().__init__(
            model,
            prefix=prefix,
            init_loc_fn=init_loc_fn,
            forward_mode_differentiation=forward_mode_differentiation,
        )

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        super()._setup_prototype(*args, **kwargs)
        self._check_no_subsampling()

    def _check_no_subsampling(self) -> None:
        assert self.prototype_trace is not None
        for site in self.prototype_trace.values():
            size, subsample_size = site.args if site.type == "plate" else (0, None)
            if isinstance(subsample_size, int) and size > subsample_size:
                raise NotImplementedError(
                    f"{type(self).__name__} cannot be used in conjunction with data "
                    f"subsampling (plate '{site.name}' subsamples {subsample_size} of {size})."
                )

    def _target_log_density(self) -> Callable[[Array], Array]:
        potential = self._potential_fn

        def log_density(x: Array) -> Array:
            with block():
                return -potential(self._unpack_latent(x))  # type: ignore[no-any-return]

        return log_density

    def _base(self) -> Any:
        loc = param(f"{self.prefix}_z_0_loc", self._init_latent)
        if self.base_dist == "diagonal":
            scale = param(
                f"{self.prefix}_z_0_scale",
                jnp.full(self.latent_dim, self._init_scale),
                constraint=constraints.positive,
            )
            return dist.Normal(loc, scale).to_event()
        scale_tril = param(
            self._scale_tril_name(),
            jnp.identity(self.latent_dim) * self._init_scale,
            constraint=constraints.scaled_unit_lower_cholesky,
        )
        return dist.MultivariateNormal(loc, scale_tril=scale_tril)

    def _scale_tril_name(self) -> str:
        return f"{self.prefix}_z_0_scale_tril"

    def _sample_latent(self, *args: Any, **kwargs: Any) -> Array:
        target = self._target_log_density()
        eta0 = param(
            f"{self.prefix}_eta0", self.eta_init, constraint=constraints.interval(0, self.eta_max)
        )
        eta_coeff = param(f"{self.prefix}_eta_coeff", 0.00)
        gamma = param(
            f"{self.prefix}_gamma", self.gamma_init, constraint=constraints.interval(0, 1)
        )
        increments = param(
            f"{self.prefix}_beta_increments", jnp.ones(self.K), constraint=constraints.positive
        )
        betas = jnp.cumsum(increments)
        betas = betas / betas[-1]  # K steps, the last at beta = 1
        mass_matrix = param(
            f"{self.prefix}_mass_matrix",
            jnp.ones(self.latent_dim),
            constraint=constraints.positive,
        )
        base = self._base()
        z_0 = sample(f"{self.prefix}_z_0", base, infer={"is_auxiliary": True})
        momentum = dist.Normal(0, mass_matrix).to_event()
        eps = sample(
            f"{self.prefix}_momentum",
            momentum.expand((self.K,)).to_event().mask(False),
            infer={"is_auxiliary": True},
        )
        z, log_factor = dais_chain(
            z_0,
            eps,
            betas,
            eta0,
            eta_coeff,
            self.eta_max,
            gamma,
            mass_matrix,
            base.log_prob,
            target,
        )
        factor(f"{self.prefix}_factor", log_factor)
        return z

    def sample_posterior(
        self,
        rng_key: Array,
        params: Mapping[str, Any],
        *args: Any,
        sample_shape: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> dict[str, Array]:
        def single(key: Array) -> dict[str, Array]:
            draw: Callable[..., Array] = substitute(seed(self._sample_latent, key), data=params)
            return self._unpack_and_constrain(draw(sample_shape=()), params, args, kwargs)

        if not sample_shape:
            return single(rng_key)
        keys = random.split(rng_key, int(np.prod(sample_shape)))
        samples = lax.map(single, keys)
        out: dict[str, Array] = jax.tree.map(
            lambda x: jnp.reshape(x, sample_shape + jnp.shape(x)[1:]), samples
        )
        return out


class AutoSurrogateLikelihoodDAIS(AutoDAIS):
    """DAIS with a cheap surrogate of the likelihood in the Hamiltonian steps, so it
    works with data subsampling (Jankowiak and Phan 2022; NumPyro's
    ``AutoSurrogateLikelihoodDAIS``). The surrogate is a model of the global latents
    (with its own learnable params) whose potential replaces the model's.

    Args:
        model: the model (global latents only).
        surrogate_model: a model of the same latents whose log density approximates
            the model's.
        K: the number of Hamiltonian steps.
        eta_init: the initial step size.
        eta_max: the largest step size.
        gamma_init: the initial momentum damping, in (0, 1).
        prefix: the param name prefix.
        base_dist: ``"diagonal"`` or ``"cholesky"``.
        init_loc_fn: the init strategy.
        init_scale: the initial scale of the base Normal.
        forward_mode_differentiation: accepted for NumPyro compatibility.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import seed, trace
        >>> from plait.infer.autoguide import AutoSurrogateLikelihoodDAIS
        >>> model = lambda: sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        >>> guide = AutoSurrogateLikelihoodDAIS(model, model, K=2)
        >>> trace(seed(guide, 0)).get_trace()["x"].value.shape
        (2,)
    """

    def __init__(
        self,
        model: Callable[..., Any],
        surrogate_model: Callable[..., Any],
        *,
        K: int = 4,  # noqa: N803 (NumPyro's name)
        eta_init: float = 0.01,
        eta_max: float = 0.1,
        gamma_init: float = 0.9,
        prefix: str = "auto",
        base_dist: str = "diagonal",
        init_loc_fn: InitStrategy = init_to_uniform,
        init_scale: float = 0.1,
        forward_mode_differentiation: bool = False,
    ) -> None:
        super().__init__(
            model,
            K=K,
            eta_init=eta_init,
            eta_max=eta_max,
            gamma_init=gamma_init,
            prefix=prefix,
            init_loc_fn=init_loc_fn,
            init_scale=init_scale,
            base_dist=base_dist,
            forward_mode_differentiation=forward_mode_differentiation,
        )
        self.surrogate_model = surrogate_model
        self._surrogate: Prototype | None = None

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        AutoContinuous._setup_prototype(self, *args, **kwargs)
        key = prng_key()
        key = random.key(0) if key is None else key
        with block():
            self._surrogate = find_prototype(
                key, self.surrogate_model, self.init_loc_fn, (), {}, type(self).__name__
            )

    def _scale_tril_name(self) -> str:
        return f"{self.prefix}_scale_tril"

    def _target_log_density(self) -> Callable[[Array], Array]:
        assert self._surrogate is not None
        surrogate_params = {
            name: param(name, site.value, **site.kwargs)
            for name, site in self._surrogate.trace.items()
            if site.type == "param"
        }
        potential = self._surrogate.potential_fn((), {})

        def log_density(x: Array) -> Array:
            with block(), substitute(data=surrogate_params):
                return -potential(self._unpack_latent(x))  # type: ignore[no-any-return]

        return log_density
