"""``MixedHMC``: Mixed Hamiltonian Monte Carlo (Zhou 2020) around an ``HMC`` kernel.

The discrete latents move *inside* the HMC trajectory (see
:mod:`plait.infer._mixed_hmc_step`); the inner ``HMC`` kernel gives the potential (on
the model conditioned on the discrete values), its step size, mass matrix and
trajectory length, and its warm-up, which adapts once per Mixed HMC step (NumPyro's
``MixedHMC``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import Array, lax, random

from plait.infer._adaptation import warmup_adapter
from plait.infer._conditioning import (
    conditioned,
    conditioned_postprocess,
    discrete_latent_sites,
    init_conditioned,
    restart_inner,
    support_sizes,
    with_conditioning,
)
from plait.infer._discrete import select_discrete_proposal
from plait.infer._hmc_kernel import HMC
from plait.infer._init import init_to_sample
from plait.infer._kernel import MCMCKernel
from plait.infer._metric import euclidean_metric
from plait.infer._mixed_hmc_step import mixed_hmc_step
from plait.infer._nuts import NUTS
from plait.infer._util import prototype_trace

__all__ = ["MixedHMC", "MixedHMCState"]

Values = dict[str, Array]


class MixedHMCState(NamedTuple):
    """The state of :class:`MixedHMC` (NumPyro's fields).

    Fields:
        z: every latent value: discrete sites, and continuous ones (unconstrained).
        hmc_state: the inner kernel's ``HMCState`` (continuous sites, warm-up).
        rng_key: the key of the next step.
        accept_prob: the acceptance probability of the last trajectory.
    """

    z: Values
    hmc_state: Any
    rng_key: Array
    accept_prob: Array


class MixedHMC(MCMCKernel[MixedHMCState]):
    """Mixed HMC for models with discrete and continuous latents (NumPyro's
    ``MixedHMC``): the discrete sites take ``num_discrete_updates`` Metropolis-within-
    Gibbs updates along each HMC trajectory, their kinetic energies refracting or
    reflecting, and the whole trajectory is accepted or rejected at the end.

    Args:
        inner_kernel: an :class:`HMC` kernel (not NUTS) on the model; its
            ``trajectory_length`` is the length of each Mixed HMC trajectory.
        num_discrete_updates: discrete updates per trajectory (default: the number of
            discrete coordinates).
        random_walk: propose uniformly over a site's support (otherwise Gibbs).
        modified: never propose the current value (Liu's modified Gibbs sampler).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import HMC, MCMC, MixedHMC
        >>> def model(probs, locs):
        ...     c = sample("c", dist.Categorical(probs))
        ...     sample("x", dist.Normal(locs[c], 1.0))
        >>> probs = jnp.array([0.15, 0.3, 0.3, 0.25])
        >>> locs = jnp.array([-2.0, 0.0, 2.0, 4.0])
        >>> kernel = MixedHMC(HMC(model, trajectory_length=1.2), num_discrete_updates=20)
        >>> mcmc = MCMC(kernel, num_warmup=500, num_samples=2000, progress_bar=False)
        >>> mcmc.run(jax.random.key(0), probs, locs)
        >>> samples = mcmc.get_samples()
        >>> sorted(samples), bool(abs(samples["x"].mean() - 1.3) < 0.5)
        (['c', 'x'], True)
    """

    def __init__(
        self,
        inner_kernel: HMC,
        *,
        num_discrete_updates: int | None = None,
        random_walk: bool = False,
        modified: bool = False,
    ) -> None:
        if not isinstance(inner_kernel, HMC):
            raise ValueError("inner_kernel must be an HMC sampler.")
        if isinstance(inner_kernel, NUTS):
            raise ValueError("The algorithm only works with HMC and and does not support NUTS.")
        if inner_kernel.model is None:
            raise ValueError("MixedHMC does not support models specified via a potential function.")
        if inner_kernel._trajectory_length is None:
            raise ValueError(
                "MixedHMC splits the inner HMC's trajectory_length between the discrete "
                "updates; give HMC(model, trajectory_length=...)."
            )
        self._model = inner_kernel.model
        self.inner_kernel = inner_kernel.wrap_model(conditioned)
        self._num_discrete_updates = num_discrete_updates
        self._random_walk = random_walk
        self._modified = modified
        self._proposal = select_discrete_proposal(random_walk, modified)
        self._sites: tuple[str, ...] = ()
        self._support_sizes = np.zeros(0, np.int32)
        self._num_warmup = 0

    @property
    def model(self) -> Callable[..., Any] | None:
        return self._model

    @property
    def sample_field(self) -> str:
        return "z"

    def _updates(self) -> int:
        if self._num_discrete_updates is None:
            return int(self._support_sizes.shape[0])
        return self._num_discrete_updates

    def prepare(
        self, rng_key: Any, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> Hashable:
        key_trace, key_inner = random.split(rng_key)
        tr = prototype_trace(
            key_trace, conditioned(self._model), init_to_sample, model_args, model_kwargs
        )
        self._sites = discrete_latent_sites(tr)
        if not self._sites:
            raise ValueError("Cannot detect any discrete latent variables in the model.")
        self._support_sizes = support_sizes(tr, self._sites)
        values = {name: tr[name].value for name in self._sites}
        inner = self.inner_kernel.prepare(
            key_inner, model_args, with_conditioning(model_kwargs, values)
        )
        static = (tuple(self._support_sizes.tolist()), self._updates(), self._random_walk)
        return ("MixedHMC", self._sites, static, self._modified, inner)

    def _adapter(self, num_warmup: int, z: Any) -> Callable[..., Any]:
        inner = self.inner_kernel
        _, update = warmup_adapter(
            num_warmup,
            adapt_step_size=inner._adapt_step_size,
            adapt_mass_matrix=inner._adapt_mass_matrix,
            dense_mass=inner._dense_mass_blocks(z),
            target_accept_prob=inner._target_accept_prob,
            regularize_mass_matrix=inner._regularize_mass_matrix,
        )
        return update

    def init(
        self,
        rng_key: Array,
        num_warmup: int,
        init_params: Any,
        model_args: tuple[Any, ...],
        model_kwargs: dict[str, Any],
    ) -> MixedHMCState:
        self._num_warmup = num_warmup
        key, key_trace, key_hmc = random.split(rng_key, 3)
        z_discrete, hmc_state = init_conditioned(
            self._model,
            self.inner_kernel,
            self._sites,
            (key_trace, key_hmc),
            num_warmup,
            init_params,
            model_args,
            model_kwargs,
        )
        accept = jnp.zeros((), hmc_state.accept_prob.dtype)
        return MixedHMCState({**z_discrete, **hmc_state.z}, hmc_state, key, accept)

    def check_init(
        self, state: MixedHMCState, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> MixedHMCState:
        z_discrete = {k: state.z[k] for k in self._sites}
        hmc_state = restart_inner(
            self.inner_kernel, state.hmc_state, z_discrete, model_args, model_kwargs
        )
        return state._replace(z={**z_discrete, **hmc_state.z}, hmc_state=hmc_state)

    def sample(
        self, state: MixedHMCState, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> MixedHMCState:
        inner = self.inner_kernel
        key, key_step = random.split(state.rng_key)
        hmc = state.hmc_state
        adapt = hmc.adapt_state
        metric = euclidean_metric(
            adapt.inverse_mass_matrix,
            adapt.mass_matrix_sqrt,
            adapt.mass_matrix_sqrt_inv,
            hmc.z,
            inner._kinetic_fn,
        )

        def potential(z: Any, discrete: Values) -> Array:
            return inner.get_potential_fn(model_args, with_conditioning(model_kwargs, discrete))(z)

        out = mixed_hmc_step(
            key_step,
            hmc.z,
            {k: state.z[k] for k in self._sites},
            hmc.potential_energy,
            hmc.z_grad,
            potential,
            step_size=adapt.step_size,
            metric=metric,
            trajectory_length=hmc.trajectory_length,
            support_sizes=self._support_sizes,
            num_discrete_updates=self._updates(),
            proposal_fn=self._proposal,
            num_steps=inner._num_steps,
        )
        accept_prob = out.accept_prob.astype(hmc.accept_prob.dtype)
        pe = out.potential_energy.astype(hmc.potential_energy.dtype)
        warming = hmc.i < self._num_warmup
        update = self._adapter(self._num_warmup, hmc.z)
        adapt = lax.cond(
            warming,
            lambda a: update(hmc.i, accept_prob, (out.z, None, pe, out.z_grad), a),
            lambda a: a,
            adapt,
        )
        itr = hmc.i + 1
        n = jnp.where(warming, itr, itr - self._num_warmup).astype(accept_prob.dtype)
        mean = hmc.mean_accept_prob + (accept_prob - hmc.mean_accept_prob) / n
        hmc = hmc._replace(
            i=itr,
            z=out.z,
            z_grad=out.z_grad,
            potential_energy=pe,
            num_steps=out.num_steps.astype(hmc.num_steps.dtype),
            accept_prob=accept_prob,
            mean_accept_prob=mean,
            diverging=out.diverging,
            adapt_state=adapt,
        )
        return MixedHMCState({**out.z_discrete, **out.z}, hmc, key, accept_prob)

    def postprocess_fn(
        self, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> Callable[[Any], Any]:
        return conditioned_postprocess(self.inner_kernel, self._sites, model_args, model_kwargs)

    def get_diagnostics_str(self, state: MixedHMCState) -> str:
        return self.inner_kernel.get_diagnostics_str(state.hmc_state)
