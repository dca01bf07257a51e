"""``HMCGibbs`` and ``DiscreteHMCGibbs``: HMC/NUTS within Gibbs (NumPyro's kernels).

Each step updates the *Gibbs sites* given the others (a user's ``gibbs_fn``, or
Metropolis-within-Gibbs sweeps over discrete sites), then takes one step of the inner
HMC / NUTS kernel on the model conditioned on the Gibbs sites
(:mod:`plait.infer._conditioning`); so the inner kernel's potential, warm-up and
post-processing are those of the conditional, and its potential as a function of the
discrete values is the discrete block's target.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from functools import reduce
from typing import Any, NamedTuple, Protocol

import jax.numpy as jnp
import numpy as np
from jax import Array, lax, random

from plait import Trace
from plait.infer._conditioning import (
    conditioned,
    conditioned_postprocess,
    discrete_latent_sites,
    init_conditioned,
    restart_inner,
    support_sizes,
    with_conditioning,
)
from plait.infer._discrete import discrete_gibbs_sweep, select_discrete_proposal
from plait.infer._hmc_kernel import HMC
from plait.infer._init import init_to_sample
from plait.infer._kernel import MCMCKernel
from plait.infer._util import prototype_trace

__all__ = [
    "CustomGibbsState",
    "DiscreteGibbsState",
    "DiscreteHMCGibbs",
    "GibbsUpdateFn",
    "HMCGibbs",
    "HMCGibbsState",
]


Values = dict[str, Array]


class GibbsUpdateFn(Protocol):
    """``gibbs_fn(rng_key=..., gibbs_sites=..., hmc_sites=...)``: new values of the Gibbs
    sites, drawn from their conditional given the (constrained) HMC sites."""

    def __call__(self, *, rng_key: Array, gibbs_sites: Values, hmc_sites: Values) -> Values: ...


def _any_changed(old: Values, new: Values) -> Array:
    flags = [jnp.any(old[k] != new[k]) for k in old]
    return reduce(jnp.logical_or, flags, jnp.asarray(False))


class CustomGibbsState(NamedTuple):
    """The Gibbs block of :class:`HMCGibbs`: the Gibbs sites' (constrained) values and
    the key of the block's last update."""

    z: Values
    rng_key: Array


class DiscreteGibbsState(NamedTuple):
    """The discrete block of :class:`DiscreteHMCGibbs`: the discrete values, the
    potential energy there (the inner kernel's, at its current point) and the key."""

    z: Values
    potential_energy: Array
    rng_key: Array


class HMCGibbsState(NamedTuple):
    """The state of :class:`HMCGibbs` / :class:`DiscreteHMCGibbs` (NumPyro's fields).

    Fields:
        z: every latent value: the Gibbs sites (constrained) and the inner kernel's
            sites (unconstrained).
        block_states: the Gibbs block's state and the inner kernel's ``HMCState``.
        rng_key: the key of the next step.
    """

    z: Values
    block_states: tuple[Any, Any]
    rng_key: Array

    @property
    def hmc_state(self) -> Any:
        """The inner kernel's state (``extra_fields=("hmc_state.accept_prob",)``)."""
        return self.block_states[-1]


class _WithinGibbs(MCMCKernel[HMCGibbsState]):
    """What HMCGibbs and DiscreteHMCGibbs share: the conditioned inner kernel, the
    Gibbs sites read in ``prepare``, and the step (Gibbs block, then the inner kernel)."""

    def __init__(self, inner_kernel: HMC) -> None:
        name = type(self).__name__
        if not isinstance(inner_kernel, HMC):
            raise ValueError("inner_kernel must be an HMC or NUTS sampler.")
        if inner_kernel.model is None:
            raise ValueError(f"{name} does not support models specified via a potential function.")
        self._model = inner_kernel.model
        self.inner_kernel = inner_kernel.wrap_model(conditioned)
        self._sites: tuple[str, ...] = ()

    @property
    def model(self) -> Callable[..., Any] | None:
        return self._model

    @property
    def sample_field(self) -> str:
        return "z"

    # -- the Gibbs block (subclasses) ----------------------------------------------------
    def _find_sites(self, tr: Trace) -> tuple[str, ...]:
        raise NotImplementedError

    def _init_block(self, rng_key: Array, z: Values, hmc_state: Any) -> Any:
        raise NotImplementedError

    def _update_block(
        self,
        rng_key: Array,
        block: Any,
        hmc_state: Any,
        model_args: tuple[Any, ...],
        model_kwargs: dict[str, Any],
    ) -> Any:
        raise NotImplementedError

    def _static(self, tr: Trace) -> Hashable:
        return ()

    # -- the protocol --------------------------------------------------------------------
    def prepare(
        self, rng_key: Any, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> Hashable:
        key_trace, key_inner = random.split(rng_key)
        tr = prototype_trace(
            key_trace, conditioned(self._model), init_to_sample, model_args, model_kwargs
        )
        self._sites = self._find_sites(tr)
        latent = {n for n, s in tr.items() if s.type == "sample" and not s.is_observed}
        unknown = [n for n in self._sites if n not in latent]
        if unknown:
            raise ValueError(f"Sites {unknown} are not latent sample sites of the model.")
        values = {name: tr[name].value for name in self._sites}
        inner = self.inner_kernel.prepare(
            key_inner, model_args, with_conditioning(model_kwargs, values)
        )
        return (type(self).__name__, self._sites, self._static(tr), inner)

    def init(
        self,
        rng_key: Array,
        num_warmup: int,
        init_params: Any,
        model_args: tuple[Any, ...],
        model_kwargs: dict[str, Any],
    ) -> HMCGibbsState:
        key, key_trace, key_block, key_hmc = random.split(rng_key, 4)
        z_gibbs, hmc_state = init_conditioned(
            self._model,
            self.inner_kernel,
            self._sites,
            (key_trace, key_hmc),
            num_warmup,
            init_params,
            model_args,
            model_kwargs,
        )
        block = self._init_block(key_block, z_gibbs, hmc_state)
        return HMCGibbsState({**block.z, **hmc_state.z}, (block, hmc_state), key)

    def check_init(
        self, state: HMCGibbsState, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> HMCGibbsState:
        block, hmc_state = state.block_states
        hmc_state = restart_inner(self.inner_kernel, hmc_state, block.z, model_args, model_kwargs)
        block = self._after_hmc(block, hmc_state)
        return state._replace(z={**block.z, **hmc_state.z}, block_states=(block, hmc_state))

    def sample(
        self, state: HMCGibbsState, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> HMCGibbsState:
        key, key_block, key_hmc = random.split(state.rng_key, 3)
        block, hmc_state = state.block_states
        new_block = self._update_block(key_block, block, hmc_state, model_args, model_kwargs)
        kwargs = with_conditioning(model_kwargs, new_block.z)
        inner = self.inner_kernel
        hmc_state = lax.cond(
            _any_changed(block.z, new_block.z),
            lambda s: inner.refresh(s, model_args, kwargs),
            lambda s: s,
            hmc_state,
        )
        hmc_state = inner.sample(hmc_state._replace(rng_key=key_hmc), model_args, kwargs)
        new_block = self._after_hmc(new_block, hmc_state)
        return HMCGibbsState({**new_block.z, **hmc_state.z}, (new_block, hmc_state), key)

    def _after_hmc(self, block: Any, hmc_state: Any) -> Any:
        return block

    def postprocess_fn(
        self, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> Callable[[Any], Any]:
        return conditioned_postprocess(self.inner_kernel, self._sites, model_args, model_kwargs)

    def get_diagnostics_str(self, state: HMCGibbsState) -> str:
        return self.inner_kernel.get_diagnostics_str(state.hmc_state)


class HMCGibbs(_WithinGibbs):
    """HMC / NUTS within Gibbs with a user's Gibbs update (NumPyro's ``HMCGibbs``).

    Each step draws the ``gibbs_sites`` with ``gibbs_fn(rng_key=..., gibbs_sites=...,
    hmc_sites=...)`` (``hmc_sites``: the constrained values of the other latents), then
    takes one ``inner_kernel`` step on the model conditioned on them. ``gibbs_fn`` must
    draw from the conditional; that is the user's responsibility.

    Args:
        inner_kernel: an :class:`HMC` or :class:`NUTS` kernel on the model.
        gibbs_fn: the Gibbs update.
        gibbs_sites: the names of the sites ``gibbs_fn`` updates.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import MCMC, NUTS, HMCGibbs
        >>> def model():
        ...     x = sample("x", dist.Normal(0.0, 2.0))
        ...     y = sample("y", dist.Normal(0.0, 2.0))
        ...     sample("obs", dist.Normal(x + y, 1.0), obs=1.0)
        >>> def gibbs_fn(rng_key, gibbs_sites, hmc_sites):
        ...     y = hmc_sites["y"]
        ...     return {"x": dist.Normal(0.8 * (1 - y), jnp.sqrt(0.8)).sample(rng_key)}
        >>> kernel = HMCGibbs(NUTS(model), gibbs_fn=gibbs_fn, gibbs_sites=["x"])
        >>> mcmc = MCMC(kernel, num_warmup=300, num_samples=1000, progress_bar=False)
        >>> mcmc.run(jax.random.key(0))
        >>> bool(abs(mcmc.get_samples()["x"].mean() - 0.44) < 0.2)
        True
    """

    def __init__(
        self, inner_kernel: HMC, gibbs_fn: GibbsUpdateFn, gibbs_sites: Sequence[str]
    ) -> None:
        if not callable(gibbs_fn):
            raise ValueError("gibbs_fn must be a callable")
        super().__init__(inner_kernel)
        self._gibbs_fn = gibbs_fn
        self._gibbs_sites = tuple(gibbs_sites)

    def _find_sites(self, tr: Trace) -> tuple[str, ...]:
        return self._gibbs_sites

    def _init_block(self, rng_key: Array, z: Values, hmc_state: Any) -> CustomGibbsState:
        return CustomGibbsState(z, rng_key)

    def _update_block(
        self,
        rng_key: Array,
        block: CustomGibbsState,
        hmc_state: Any,
        model_args: tuple[Any, ...],
        model_kwargs: dict[str, Any],
    ) -> CustomGibbsState:
        kwargs = with_conditioning(model_kwargs, block.z)
        constrained = self.inner_kernel.postprocess_fn(model_args, kwargs)(hmc_state.z)
        hmc_sites = {k: v for k, v in constrained.items() if k in hmc_state.z}
        new = self._gibbs_fn(rng_key=rng_key, gibbs_sites=block.z, hmc_sites=hmc_sites)
        if set(new) != set(block.z):
            raise ValueError(
                f"gibbs_fn must return values for exactly the sites {sorted(block.z)}, "
                f"got {sorted(new)}."
            )
        z = {k: jnp.asarray(new[k]).astype(jnp.result_type(block.z[k])) for k in block.z}
        return CustomGibbsState(z, rng_key)


class DiscreteHMCGibbs(_WithinGibbs):
    """HMC / NUTS within Gibbs for models with discrete latents (NumPyro's
    ``DiscreteHMCGibbs``): each step sweeps the discrete sites (every coordinate, in a
    random order) with Metropolis-within-Gibbs updates, then takes one
    ``inner_kernel`` step on the continuous sites given them.

    Discrete sites marked ``infer={"enumerate": "parallel"}`` are summed out instead
    (plait-enum), as in HMC.

    Args:
        inner_kernel: an :class:`HMC` or :class:`NUTS` kernel on the model.
        random_walk: propose uniformly over a site's support (otherwise from its
            conditional: Gibbs).
        modified: never propose the current value (Liu's modified Gibbs sampler).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import MCMC, NUTS, DiscreteHMCGibbs
        >>> def model(probs, locs):
        ...     c = sample("c", dist.Categorical(probs))
        ...     sample("x", dist.Normal(locs[c], 1.0))
        >>> probs = jnp.array([0.15, 0.3, 0.3, 0.25])
        >>> locs = jnp.array([-2.0, 0.0, 2.0, 4.0])
        >>> kernel = DiscreteHMCGibbs(NUTS(model), modified=True)
        >>> mcmc = MCMC(kernel, num_warmup=500, num_samples=2000, progress_bar=False)
        >>> mcmc.run(jax.random.key(0), probs, locs)
        >>> bool(abs(mcmc.get_samples()["x"].mean() - 1.3) < 0.5)  # E[x] = sum(probs * locs)
        True
    """

    def __init__(
        self, inner_kernel: HMC, *, random_walk: bool = False, modified: bool = False
    ) -> None:
        super().__init__(inner_kernel)
        self._random_walk = random_walk
        self._modified = modified
        self._proposal = select_discrete_proposal(random_walk, modified)
        self._support_sizes = np.zeros(0, np.int32)

    def _find_sites(self, tr: Trace) -> tuple[str, ...]:
        sites = discrete_latent_sites(tr)
        if not sites:
            raise ValueError("Cannot detect any discrete latent variables in the model.")
        self._support_sizes = support_sizes(tr, sites)
        return sites

    def _static(self, tr: Trace) -> Hashable:
        return (tuple(self._support_sizes.tolist()), self._random_walk, self._modified)

    def _init_block(self, rng_key: Array, z: Values, hmc_state: Any) -> DiscreteGibbsState:
        z = {
            k: v.astype(jnp.int32) if jnp.issubdtype(v.dtype, jnp.bool_) else v
            for k, v in z.items()
        }
        return DiscreteGibbsState(z, hmc_state.potential_energy, rng_key)

    def _update_block(
        self,
        rng_key: Array,
        block: DiscreteGibbsState,
        hmc_state: Any,
        model_args: tuple[Any, ...],
        model_kwargs: dict[str, Any],
    ) -> DiscreteGibbsState:
        inner = self.inner_kernel

        def potential(z: Values) -> Array:
            kwargs = with_conditioning(model_kwargs, z)
            return inner.get_potential_fn(model_args, kwargs)(hmc_state.z)

        # The inner state's potential is the block's at the current discrete values.
        z, pe = discrete_gibbs_sweep(
            rng_key,
            block.z,
            hmc_state.potential_energy,
            potential,
            jnp.asarray(self._support_sizes),
            self._proposal,
        )
        return DiscreteGibbsState(z, pe, rng_key)

    def _after_hmc(self, block: DiscreteGibbsState, hmc_state: Any) -> DiscreteGibbsState:
        return block._replace(potential_energy=hmc_state.potential_energy)
