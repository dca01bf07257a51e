"""``NUTS``: BlackJAX's No-U-Turn sampler on a model's unconstrained potential.

The functions here act on one chain; :class:`plait.infer.MCMC` maps them over chains
(``vmap``, devices, or one after another) and compiles them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.mcmc import nuts as bj_nuts
from blackjax.mcmc.hmc import HMCState
from jax import Array, lax, random
from jax.flatten_util import ravel_pytree

from plait.errors import PlaitError
from plait.handlers import seed, trace
from plait.infer._adaptation import AdaptState, window_adaptation
from plait.infer._args import StaticArgs, merge_args
from plait.infer._init import InitStrategy, init_to_uniform
from plait.infer._util import ModelSpec, find_valid_initial_params, make_postprocess, make_potential

__all__ = ["NUTS", "SampleStats"]


class SampleStats(NamedTuple):
    """Per-draw statistics of NUTS (``MCMC.get_extra_fields()``): minus the log density,
    divergence, mean acceptance probability, leapfrog steps and trajectory doublings
    (arrays, on the device inside the sampler and in NumPy after the run)."""

    potential_energy: Any
    diverging: Any
    accept_prob: Any
    num_steps: Any
    tree_depth: Any


class NUTS:
    """The No-U-Turn sampler (BlackJAX's multinomial NUTS) with Stan's window adaptation.

    Discrete latents must be marked for enumeration; they are summed out of the
    potential by the log-density hook (plait-enum).

    Args:
        model: the model.
        step_size: the initial step size.
        adapt_step_size: adapt the step size by dual averaging during warm-up.
        adapt_mass_matrix: adapt the (inverse) mass matrix during warm-up.
        dense_mass: a dense mass matrix instead of a diagonal one.
        target_accept_prob: the acceptance rate the step size adaptation aims at.
        max_tree_depth: the largest number of trajectory doublings.
        init_strategy: where chains start (:func:`plait.infer.init_to_uniform`, ...).

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import NUTS
        >>> NUTS(lambda: sample("x", dist.Normal(0.0, 1.0)), target_accept_prob=0.9)
        NUTS(model=<lambda>, target_accept_prob=0.9, max_tree_depth=10)
    """

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        step_size: float = 1.0,
        adapt_step_size: bool = True,
        adapt_mass_matrix: bool = True,
        dense_mass: bool = False,
        target_accept_prob: float = 0.8,
        max_tree_depth: int = 10,
        init_strategy: InitStrategy = init_to_uniform,
    ) -> None:
        if not 0 < target_accept_prob < 1:
            raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob}.")
        self.model = model
        self.step_size = step_size
        self.adapt_step_size = adapt_step_size
        self.adapt_mass_matrix = adapt_mass_matrix
        self.dense_mass = dense_mass
        self.target_accept_prob = target_accept_prob
        self.max_tree_depth = max_tree_depth
        self.init_strategy = init_strategy

    def __repr__(self) -> str:
        name = getattr(self.model, "__name__", type(self.model).__name__)
        return (
            f"NUTS(model={name}, target_accept_prob={self.target_accept_prob}, "
            f"max_tree_depth={self.max_tree_depth})"
        )

    def chain_functions(self, spec: ModelSpec, static: StaticArgs) -> ChainFunctions:
        """The one-chain functions for a model with latent structure ``spec``."""
        if not spec.names:
            raise PlaitError(
                "NUTS needs at least one continuous latent site, but the model has none "
                f"(enumerated: {list(spec.enumerated)}). To draw discrete sites alone, use "
                "Predictive(model, infer_discrete=True) with plait-enum."
            )
        return ChainFunctions(self, spec, static)


class ChainFunctions:
    """The compiled-once pieces of one NUTS chain for one model structure."""

    def __init__(self, sampler: NUTS, spec: ModelSpec, static: StaticArgs) -> None:
        self.sampler = sampler
        self.spec = spec
        self.static = static
        self.potential = make_potential(sampler.model, spec)
        self.postprocess_one = make_postprocess(sampler.model, spec)
        self.adaptation = window_adaptation(
            dense_mass=sampler.dense_mass,
            target_accept_prob=sampler.target_accept_prob,
            adapt_step_size=sampler.adapt_step_size,
            adapt_mass_matrix=sampler.adapt_mass_matrix,
        )
        self.kernel = bj_nuts.build_kernel()

    def _logdensity(self, dynamic: tuple[Any, ...]) -> Callable[[Any], Array]:
        args, kwargs = merge_args(dynamic, self.static)
        return lambda z: -self.potential(z, args, kwargs)

    def _transition(
        self, key: Array, state: HMCState, logdensity: Callable[[Any], Array], step: Any, imm: Any
    ) -> tuple[HMCState, Any]:
        return self.kernel(  # type: ignore[no-any-return]
            key, state, logdensity, step, imm, max_num_doublings=self.sampler.max_tree_depth
        )

    # -- one chain ---------------------------------------------------------------------
    def init(
        self, key: Array, z: Mapping[str, Array] | None, dynamic: tuple[Any, ...]
    ) -> tuple[HMCState, AdaptState, Array]:
        """A valid start (searched, or at unconstrained ``z``) and the warm-up state."""
        args, kwargs = merge_args(dynamic, self.static)
        if z is None:
            info, ok = find_valid_initial_params(
                key,
                self.sampler.model,
                self.spec,
                init_strategy=self.sampler.init_strategy,
                model_args=args,
                model_kwargs=kwargs,
            )
            z, pe, grad = info
        else:
            pe, grad = jax.value_and_grad(self.potential)(z, args, kwargs)
            flat = ravel_pytree(grad)[0]
            ok = jnp.isfinite(pe) & jnp.all(jnp.isfinite(flat))
        state = HMCState(z, -pe, jax.tree_util.tree_map(jnp.negative, grad))
        return state, self.adaptation.init(z, self.sampler.step_size), ok

    def observed(self, dynamic: tuple[Any, ...]) -> dict[str, Array]:
        """The values of the observed sites (for ArviZ)."""
        args, kwargs = merge_args(dynamic, self.static)
        prepared = seed(self.sampler.model, 0)
        tr = trace(prepared).get_trace(*args, **kwargs)
        return {n: tr[n].value for n in self.spec.observed if n in tr}

    def steps(
        self,
        state: HMCState,
        adapt: AdaptState,
        key: Array,
        start: Array,
        count: Array,
        warming: Array,
        schedule: Array,
        dynamic: tuple[Any, ...],
        length: int,
    ) -> tuple[tuple[HMCState, AdaptState], tuple[Any, SampleStats], tuple[Array, Array]]:
        """``count`` (at most ``length``) NUTS steps, numbered from ``start``.

        While ``warming``, the step size and mass matrix adapt along ``schedule``. One
        compiled function serves warm-up and sampling and any ``count``: a loop with a
        dynamic trip count, writing each step's draw into buffers of ``length`` rows (no
        ``lax.cond`` around the NUTS step, which would double its compile time).

        Returns:
            The last state and warm-up state; the unconstrained positions and statistics
            of the steps (rows past ``count`` are zeros); the adapted step size and
            inverse mass matrix (to sample with after the last warm-up chunk).
        """
        logdensity = self._logdensity(dynamic)
        last = schedule.shape[0] - 1

        def step(i: Array, carry: Any) -> Any:
            state, adapt, buffers = carry
            new, info = self._transition(
                random.fold_in(key, start + i),
                state,
                logdensity,
                adapt.step_size,
                adapt.inverse_mass_matrix,
            )
            stage = schedule[jnp.minimum(start + i, last)]
            updated = self.adaptation.update(
                adapt, stage[0], stage[1], new.position, info.acceptance_rate
            )
            # A select, not a lax.cond: adapting is cheap next to the NUTS step.
            adapt = jax.tree_util.tree_map(lambda a, b: jnp.where(warming, a, b), updated, adapt)
            row = (new.position, _stats(new, info))
            buffers = jax.tree_util.tree_map(
                lambda buf, v: lax.dynamic_update_index_in_dim(buf, v, i, 0), buffers, row
            )
            return new, adapt, buffers

        blank = (state.position, _stats(state, None))
        buffers = jax.tree_util.tree_map(
            lambda v: jnp.zeros((length, *jnp.shape(v)), jnp.result_type(v)), blank
        )
        state, adapt, buffers = lax.fori_loop(0, count, step, (state, adapt, buffers))
        return (state, adapt), buffers, self.adaptation.final(adapt)

    def postprocess(self, z: Mapping[str, Array], dynamic: tuple[Any, ...]) -> dict[str, Array]:
        """Constrained latents and deterministic sites at unconstrained ``z``."""
        args, kwargs = merge_args(dynamic, self.static)
        return self.postprocess_one(z, args, kwargs)


def _stats(state: HMCState, info: Any) -> SampleStats:
    """The statistics of a transition to ``state`` (zeros when ``info`` is None), with
    fixed dtypes so that skipped steps can return the same structure."""
    real = jnp.result_type(state.logdensity)
    if info is None:
        zero = jnp.zeros((), real)
        count = jnp.zeros((), jnp.int32)
        return SampleStats(zero, jnp.zeros((), bool), zero, count, count)
    return SampleStats(
        (-state.logdensity).astype(real),
        jnp.asarray(info.is_divergent).astype(bool),
        jnp.asarray(info.acceptance_rate).astype(real),
        jnp.asarray(info.num_integration_steps).astype(jnp.int32),
        jnp.asarray(info.num_trajectory_expansions).astype(jnp.int32),
    )
