"""One Mixed HMC step (Zhou 2020, Algorithm 1, with ``n_D = 1``), as a pure function.

The continuous latents ``z`` follow Hamiltonian dynamics (BlackJAX's velocity Verlet on
BlackJAX's Euclidean metric); each discrete coordinate ``i`` has a kinetic energy
``k_i ~ Exponential(1)`` and an arrival time ``t_i ~ Uniform(0, 1)``. The trajectory is
cut at the arrival times into ``num_discrete_updates`` sub-trajectories; after each one
the coordinate that arrived proposes a new value (a proposal of
:mod:`plait.infer._discrete`) and *refracts* — takes it, paying ``-log_accept_ratio``
out of ``k_i`` — when ``k_i + log_accept_ratio > 0``, else reflects (keeps its value).
The whole trajectory is then accepted with ``min(1, exp(-ΔH + Σ ΔU_discrete))``, where
``ΔU_discrete`` are the potential changes of the discrete moves (already paid for in
the discrete kinetic energies).

[1] G. Zhou, *Mixed Hamiltonian Monte Carlo for Mixed Discrete and Continuous
Variables*, NeurIPS 2020.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.mcmc.integrators import IntegratorState, velocity_verlet
from blackjax.mcmc.metrics import Metric
from blackjax.mcmc.trajectory import static_integration
from jax import Array, lax, random

from plait.infer._discrete import ProposalFn, Values

__all__ = ["MixedHMCStep", "mixed_hmc_step"]

MAX_DELTA_ENERGY = 1000.0


class MixedHMCStep(NamedTuple):
    """The result of one Mixed HMC step.

    Fields:
        z: the continuous latents (unconstrained).
        z_discrete: the discrete latents.
        potential_energy: the potential energy at ``(z, z_discrete)``.
        z_grad: its gradient with respect to ``z``.
        accept_prob: the acceptance probability of the trajectory.
        num_steps: the leapfrog steps of all sub-trajectories.
        diverging: whether the energy error exceeded 1000.
    """

    z: Any
    z_discrete: Values
    potential_energy: Array
    z_grad: Any
    accept_prob: Array
    num_steps: Array
    diverging: Array


def mixed_hmc_step(
    rng_key: Array,
    z: Any,
    z_discrete: Values,
    potential_energy: Array,
    z_grad: Any,
    potential_fn: Callable[[Any, Values], Array],
    *,
    step_size: Array,
    metric: Metric,
    trajectory_length: Array | float,
    support_sizes: np.ndarray,
    num_discrete_updates: int,
    proposal_fn: ProposalFn,
    num_steps: int | None = None,
) -> MixedHMCStep:
    """One Mixed HMC step from ``(z, z_discrete)``.

    Args:
        rng_key: the key.
        z: the continuous latents (a pytree).
        z_discrete: the discrete latents.
        potential_energy: ``potential_fn(z, z_discrete)``.
        z_grad: its gradient with respect to ``z``.
        potential_fn: the joint potential energy.
        step_size: the leapfrog step size.
        metric: BlackJAX's metric of the momentum (``gaussian_euclidean(imm)``).
        trajectory_length: the length of the whole trajectory.
        support_sizes: the support size of each flat discrete coordinate (static).
        num_discrete_updates: the number of discrete updates along the trajectory.
        proposal_fn: the discrete proposal.
        num_steps: a fixed number of leapfrog steps per sub-trajectory (NumPyro's HMC
            ``num_steps``); by default ``ceil(length / step_size)``. Either way each
            sub-trajectory has exactly its length.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from blackjax.mcmc.metrics import gaussian_euclidean
        >>> from plait.infer._discrete import select_discrete_proposal
        >>> locs = jnp.array([-1.0, 1.0])
        >>> pe = lambda z, d: 0.5 * (z - locs[d["c"]]) ** 2
        >>> d = {"c": jnp.array(0)}
        >>> z = jnp.array(0.0)
        >>> out = mixed_hmc_step(jax.random.key(0), z, d, pe(z, d), jax.grad(pe)(z, d), pe,
        ...     step_size=jnp.array(0.3), metric=gaussian_euclidean(jnp.ones(1)),
        ...     trajectory_length=1.0,
        ...     support_sizes=np.array([2]), num_discrete_updates=3,
        ...     proposal_fn=select_discrete_proposal(False, True))
        >>> bool(jnp.allclose(out.potential_energy, pe(out.z, out.z_discrete)))
        True
    """
    num_discretes = int(support_sizes.shape[0])
    sizes = jnp.asarray(support_sizes)
    key_loop, key_ke, key_time, key_r, key_accept = random.split(rng_key, 5)
    ke_discrete = random.exponential(key_ke, (num_discretes,), potential_energy.dtype)
    arrival = random.uniform(key_time, (num_discretes,), potential_energy.dtype)
    # The time of the last update, so that the whole trajectory has trajectory_length.
    total_time = (num_discrete_updates - 1) // num_discretes + jnp.sort(arrival)[
        (num_discrete_updates - 1) % num_discretes
    ]
    time_unit = trajectory_length / total_time
    momentum = metric.sample_momentum(key_r, z)
    energy_old = metric.kinetic_energy(momentum) + potential_energy

    def value_and_grad(position: Any, discrete: Values) -> tuple[Array, Any]:
        return jax.value_and_grad(potential_fn)(position, discrete)

    def sub_trajectory(state: IntegratorState, discrete: Values, length: Array) -> Any:
        def logdensity(position: Any) -> Array:
            return -potential_fn(position, discrete)

        if num_steps is None:
            steps = jnp.maximum(jnp.ceil(length / step_size), 1).astype(jnp.int32)
        else:
            steps = jnp.asarray(num_steps, jnp.int32)
        integrate = static_integration(velocity_verlet(logdensity, metric.kinetic_energy))
        return integrate(state, length / steps, steps), steps

    def body(_: Array, carry: tuple[Any, ...]) -> tuple[Any, ...]:
        key, state, discrete, ke, delta_pe_sum, arrival, num_steps = carry
        idx = jnp.argmin(arrival)
        length = arrival[idx] * time_unit
        arrival = (arrival - arrival[idx]).at[idx].set(1.0)
        state, steps = sub_trajectory(state, discrete, length)
        pe = -state.logdensity

        key, discrete_new, _, log_accept_ratio = proposal_fn(
            key, discrete, pe, lambda d: potential_fn(state.position, d), idx, sizes[idx]
        )
        ke_new = ke[idx] + log_accept_ratio

        def refract(_: Any) -> tuple[Values, Array, Any]:
            value, grad = value_and_grad(state.position, discrete_new)
            return discrete_new, value, grad

        def reflect(_: Any) -> tuple[Values, Array, Any]:
            grad = jax.tree_util.tree_map(jnp.negative, state.logdensity_grad)
            return discrete, pe, grad

        moves = ke_new > 0
        discrete, pe_after, grad = lax.cond(moves, refract, reflect, None)
        ke = ke.at[idx].set(jnp.where(moves, ke_new, ke[idx]))
        delta_pe_sum = delta_pe_sum + pe_after - pe
        state = state._replace(
            logdensity=-pe_after, logdensity_grad=jax.tree_util.tree_map(jnp.negative, grad)
        )
        return key, state, discrete, ke, delta_pe_sum, arrival, num_steps + steps

    start = IntegratorState(
        z, momentum, -potential_energy, jax.tree_util.tree_map(jnp.negative, z_grad)
    )
    init = (
        key_loop,
        start,
        z_discrete,
        ke_discrete,
        jnp.zeros_like(potential_energy),
        arrival,
        jnp.zeros((), jnp.int32),
    )
    _, end, discrete_new, _, delta_pe_sum, _, num_steps = lax.fori_loop(
        0, num_discrete_updates, body, init
    )
    energy_new = metric.kinetic_energy(end.momentum) - end.logdensity
    delta_energy = energy_new - energy_old - delta_pe_sum
    delta_energy = jnp.where(jnp.isnan(delta_energy), jnp.inf, delta_energy)
    accept_prob = jnp.minimum(jnp.exp(-delta_energy), 1.0)
    accept = random.bernoulli(key_accept, accept_prob)

    def pick(new: Any, old: Any) -> Any:
        return jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), new, old)

    return MixedHMCStep(
        pick(end.position, z),
        pick(discrete_new, z_discrete),
        jnp.where(accept, -end.logdensity, potential_energy),
        pick(jax.tree_util.tree_map(jnp.negative, end.logdensity_grad), z_grad),
        accept_prob,
        jnp.asarray(num_steps),
        delta_energy > MAX_DELTA_ENERGY,
    )
