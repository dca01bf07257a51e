"""The functional HMC / NUTS interface: ``init_kernel, sample_kernel = hmc(potential_fn)``.

NumPyro's ``numpyro.infer.hmc.hmc`` with its state (:class:`HMCState`) and warm-up
(:func:`plait.infer._adaptation.warmup_adapter`); the transitions are BlackJAX's
(``blackjax.mcmc.hmc.build_kernel`` and its iterative multinomial NUTS, assembled here
from BlackJAX's trajectory pieces so that the tree depth may differ between warm-up and
sampling, NumPyro's ``max_tree_depth=(d1, d2)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.mcmc import hmc as bj_hmc
from blackjax.mcmc import integrators, proposal, termination, trajectory
from blackjax.mcmc.metrics import Metric
from jax import Array, lax, random
from jax.flatten_util import ravel_pytree

from plait.infer._adaptation import HMCAdaptState, initialize_mass_matrix, warmup_adapter
from plait.infer._metric import euclidean_metric, forward_mode_logdensity
from plait.infer._util import ParamInfo

__all__ = ["HMCState", "hmc", "value_and_grad"]

MAX_DELTA_ENERGY = 1000.0


class HMCState(NamedTuple):
    """The state of an HMC / NUTS chain (NumPyro's fields).

    Fields:
        i: the iteration (warm-up adapts while ``i < num_warmup``).
        z: the unconstrained latent values.
        z_grad: the gradient of the potential energy at ``z``.
        potential_energy: minus the log density at ``z``.
        energy: potential plus kinetic energy of the last trajectory's proposal.
        r: the momentum (``None``: drawn afresh at each step).
        trajectory_length: HMC's trajectory length (``None`` for NUTS).
        num_steps: leapfrog steps of the last trajectory.
        accept_prob: the acceptance probability of the last transition.
        mean_accept_prob: its running mean (restarted after warm-up).
        diverging: whether the last trajectory diverged.
        adapt_state: the :class:`~plait.infer._adaptation.HMCAdaptState`.
        rng_key: the key of the next transition.
    """

    i: Array
    z: Any
    z_grad: Any
    potential_energy: Array
    energy: Array
    r: Any
    trajectory_length: Any
    num_steps: Array
    accept_prob: Array
    mean_accept_prob: Array
    diverging: Array
    adapt_state: HMCAdaptState
    rng_key: Array


def value_and_grad(
    fn: Callable[[Any], Array], z: Any, forward_mode_differentiation: bool = False
) -> tuple[Array, Any]:
    """``(fn(z), grad fn(z))``, by forward-mode differentiation if asked."""
    if forward_mode_differentiation:
        fn = forward_mode_logdensity(fn)
    return jax.value_and_grad(fn)(z)  # type: ignore[no-any-return]


def _nuts_step(
    rng_key: Array,
    state: bj_hmc.HMCState,
    logdensity_fn: Callable[[Any], Array],
    step_size: Array,
    metric: Metric,
    max_depth: int,
    depth: Array,
) -> tuple[bj_hmc.HMCState, Any]:
    """BlackJAX's iterative NUTS transition with at most ``depth`` doublings (traced),
    ``max_depth`` (static) sizing the U-turn checkpoints."""
    new_term, update_term, is_met = termination.iterative_uturn_numpyro(metric.check_turning)
    integrator = integrators.velocity_verlet(logdensity_fn, metric.kinetic_energy)
    integrate = trajectory.dynamic_progressive_integration(
        integrator, metric.kinetic_energy, update_term, is_met, MAX_DELTA_ENERGY
    )
    expand = trajectory.dynamic_multiplicative_expansion(integrate, metric.check_turning, depth)  # type: ignore[arg-type]
    key_momentum, key_integrator = random.split(rng_key)
    momentum = metric.sample_momentum(key_momentum, state.position)
    start = integrators.IntegratorState(
        state.position, momentum, state.logdensity, state.logdensity_grad
    )
    energy = -start.logdensity + metric.kinetic_energy(start.momentum)
    initial = trajectory.DynamicExpansionState(
        0,
        proposal.Proposal(start, energy, 0.0, -np.inf),
        trajectory.Trajectory(start, start, start.momentum, 0),
        new_term(start, max_depth),
    )
    expansion, (diverging, _) = expand(key_integrator, initial, energy, step_size)
    _, sampled, traj, _ = expansion
    accept_prob = jnp.exp(sampled.sum_log_p_accept) / traj.num_states
    new = bj_hmc.HMCState(
        sampled.state.position, sampled.state.logdensity, sampled.state.logdensity_grad
    )
    return new, (sampled.energy, traj.num_states, accept_prob, diverging)


def _hmc_step(
    rng_key: Array,
    state: bj_hmc.HMCState,
    logdensity_fn: Callable[[Any], Array],
    step_size: Array,
    metric: Metric,
    num_steps: Array,
) -> tuple[bj_hmc.HMCState, Any]:
    """BlackJAX's HMC transition (Metropolis-corrected endpoint), with NumPyro's
    statistics: the energy of the state kept."""
    kernel = bj_hmc.build_kernel(divergence_threshold=MAX_DELTA_ENERGY)
    new, info = kernel(rng_key, state, logdensity_fn, step_size, metric, num_steps)
    start = -state.logdensity + metric.kinetic_energy(info.momentum)
    energy = jnp.where(info.is_accepted, info.energy, start)
    return new, (energy, num_steps, info.acceptance_rate, info.is_divergent)


class _Config:
    """What ``init_kernel`` fixes for ``sample_kernel`` (static Python values)."""

    num_warmup: int = 0
    max_tree_depth: tuple[int, int] = (10, 10)
    num_steps: int | None = None
    forward_mode: bool = False
    update: Callable[..., HMCAdaptState] | None = None


def hmc(
    potential_fn: Callable[[Any], Array] | None = None,
    potential_fn_gen: Callable[..., Callable[[Any], Array]] | None = None,
    kinetic_fn: Callable[[Any, Any], Array] | None = None,
    algo: str = "NUTS",
) -> tuple[Callable[..., HMCState], Callable[..., HMCState]]:
    """``(init_kernel, sample_kernel)`` of HMC or NUTS on a potential (NumPyro's ``hmc``).

    Args:
        potential_fn: minus the log density of the unconstrained parameters.
        potential_fn_gen: instead, ``potential_fn_gen(*model_args, **model_kwargs)``
            returns the potential (so data can change between calls).
        kinetic_fn: ``kinetic_fn(inverse_mass_matrix, r)``; default Gaussian.
        algo: ``"NUTS"`` or ``"HMC"``.

    Returns:
        ``init_kernel(init_params, num_warmup, step_size=1.0, inverse_mass_matrix=None,
        adapt_step_size=True, adapt_mass_matrix=True, dense_mass=False,
        target_accept_prob=0.8, *, num_steps=None, trajectory_length=2π,
        max_tree_depth=10, find_heuristic_step_size=False,
        forward_mode_differentiation=False, regularize_mass_matrix=True, model_args=(),
        model_kwargs=None, rng_key=None) -> HMCState`` and ``sample_kernel(state,
        model_args=(), model_kwargs=None) -> HMCState``; both are pure and jittable.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import hmc, initialize_model
        >>> def model():
        ...     sample("x", dist.Normal(3.0, 1.0))
        >>> info = initialize_model(jax.random.key(0), model)
        >>> init_kernel, sample_kernel = hmc(info.potential_fn, algo="NUTS")
        >>> state = init_kernel(info.param_info, num_warmup=200, rng_key=jax.random.key(1))
        >>> step = jax.jit(sample_kernel)
        >>> draws = []
        >>> for _ in range(600):
        ...     state = step(state)
        ...     draws.append(state.z["x"])
        >>> bool(abs(jnp.mean(jnp.stack(draws[200:])) - 3.0) < 0.3)
        True
    """
    if algo not in ("HMC", "NUTS"):
        raise ValueError(f"algo must be 'HMC' or 'NUTS', got {algo!r}.")
    if (potential_fn is None) == (potential_fn_gen is None):
        raise ValueError("hmc needs exactly one of potential_fn and potential_fn_gen.")
    config = _Config()

    def potential_for(
        model_args: tuple[Any, ...], model_kwargs: Mapping[str, Any] | None
    ) -> Callable[[Any], Array]:
        if potential_fn_gen is not None:
            return potential_fn_gen(*model_args, **(model_kwargs or {}))
        assert potential_fn is not None
        return potential_fn

    def init_kernel(
        init_params: Any,
        num_warmup: int,
        step_size: float = 1.0,
        inverse_mass_matrix: Any = None,
        adapt_step_size: bool = True,
        adapt_mass_matrix: bool = True,
        dense_mass: Any = False,
        target_accept_prob: float = 0.8,
        *,
        num_steps: int | None = None,
        trajectory_length: float | None = 2 * math.pi,
        max_tree_depth: int | tuple[int, int] = 10,
        find_heuristic_step_size: bool = False,
        forward_mode_differentiation: bool = False,
        regularize_mass_matrix: bool = True,
        model_args: tuple[Any, ...] = (),
        model_kwargs: Mapping[str, Any] | None = None,
        rng_key: Array | None = None,
    ) -> HMCState:
        rng_key = random.key(0) if rng_key is None else rng_key
        config.num_warmup = num_warmup
        config.max_tree_depth = (
            tuple(max_tree_depth)  # type: ignore[assignment]
            if isinstance(max_tree_depth, tuple | list)
            else (max_tree_depth, max_tree_depth)
        )
        config.num_steps = num_steps
        config.forward_mode = forward_mode_differentiation
        pe_fn = potential_for(model_args, model_kwargs)
        if isinstance(init_params, ParamInfo):
            z, pe, z_grad = init_params
        else:
            z, pe, z_grad = init_params, None, None
        if pe is None or z_grad is None:
            pe, z_grad = value_and_grad(pe_fn, z, forward_mode_differentiation)
        search = (
            partial(_find_reasonable_step_size, pe_fn, kinetic_fn, forward_mode_differentiation)
            if find_heuristic_step_size
            else None
        )
        wa_init, config.update = warmup_adapter(
            num_warmup,
            find_reasonable_step_size=search,
            adapt_step_size=adapt_step_size,
            adapt_mass_matrix=adapt_mass_matrix,
            dense_mass=dense_mass,
            target_accept_prob=target_accept_prob,
            regularize_mass_matrix=regularize_mass_matrix,
        )
        key_hmc, key_wa, key_momentum = random.split(rng_key, 3)
        adapt = wa_init((z, None, pe, z_grad), key_wa, step_size, inverse_mass_matrix)
        metric = euclidean_metric(
            adapt.inverse_mass_matrix,
            adapt.mass_matrix_sqrt,
            adapt.mass_matrix_sqrt_inv,
            z,
            kinetic_fn,
        )
        energy = pe + metric.kinetic_energy(metric.sample_momentum(key_momentum, z))
        length = (
            None
            if trajectory_length is None
            else jnp.asarray(trajectory_length, jnp.result_type(float))
        )
        zero = jnp.array(0, jnp.int32)
        real = jnp.zeros((), jnp.result_type(float))
        return HMCState(
            zero, z, z_grad, jnp.asarray(pe), jnp.asarray(energy), None, length, zero, real, real,
            jnp.array(False), adapt, key_hmc,
        )  # fmt: skip

    def sample_kernel(
        hmc_state: HMCState,
        model_args: tuple[Any, ...] = (),
        model_kwargs: Mapping[str, Any] | None = None,
    ) -> HMCState:
        assert config.update is not None, "call init_kernel before sample_kernel."
        pe_fn = potential_for(model_args, model_kwargs)
        logdensity = _negate(pe_fn, config.forward_mode)
        rng_key, key_transition = random.split(hmc_state.rng_key)
        adapt = hmc_state.adapt_state
        metric = euclidean_metric(
            adapt.inverse_mass_matrix,
            adapt.mass_matrix_sqrt,
            adapt.mass_matrix_sqrt_inv,
            hmc_state.z,
            kinetic_fn,
        )
        start = bj_hmc.HMCState(
            hmc_state.z,
            -hmc_state.potential_energy,
            jax.tree_util.tree_map(jnp.negative, hmc_state.z_grad),
        )
        warming = hmc_state.i < config.num_warmup
        step_size = adapt.step_size
        if algo == "NUTS":
            d1, d2 = config.max_tree_depth
            depth = jnp.where(warming, d1, d2) if d1 != d2 else jnp.asarray(d1)
            new, stats = _nuts_step(
                key_transition, start, logdensity, step_size, metric, max(d1, d2), depth
            )  # type: ignore[arg-type]
        else:
            size = ravel_pytree(hmc_state.z)[0].size
            if config.num_steps is not None:
                num_steps: Any = config.num_steps
            elif size == 0:
                num_steps = 1
            else:
                num_steps = jnp.ceil(hmc_state.trajectory_length / step_size).astype(jnp.int32)
            if hmc_state.trajectory_length is not None:
                step_size = hmc_state.trajectory_length / num_steps
            new, stats = _hmc_step(key_transition, start, logdensity, step_size, metric, num_steps)
        energy, num_steps_taken, accept_prob, diverging = stats
        z, pe = new.position, -new.logdensity
        z_grad = jax.tree_util.tree_map(jnp.negative, new.logdensity_grad)
        update = config.update
        adapt = lax.cond(
            warming,
            lambda a: update(hmc_state.i, accept_prob, (z, None, pe, z_grad), a),
            lambda a: a,
            adapt,
        )
        itr = hmc_state.i + 1
        n = jnp.where(warming, itr, itr - config.num_warmup).astype(accept_prob.dtype)
        mean_accept = hmc_state.mean_accept_prob + (accept_prob - hmc_state.mean_accept_prob) / n
        return HMCState(
            itr, z, z_grad, pe.astype(hmc_state.potential_energy.dtype),
            jnp.asarray(energy).astype(hmc_state.energy.dtype), hmc_state.r,
            hmc_state.trajectory_length, jnp.asarray(num_steps_taken).astype(jnp.int32),
            accept_prob.astype(hmc_state.accept_prob.dtype), mean_accept,
            jnp.asarray(diverging, bool), adapt, rng_key,
        )  # fmt: skip

    return init_kernel, sample_kernel


def _negate(potential: Callable[[Any], Array], forward_mode: bool) -> Callable[[Any], Array]:
    def logdensity(z: Any) -> Array:
        return -potential(z)

    return forward_mode_logdensity(logdensity) if forward_mode else logdensity


def _find_reasonable_step_size(
    potential_fn: Callable[[Any], Array],
    kinetic_fn: Callable[[Any, Any], Array] | None,
    forward_mode: bool,
    init_step_size: Array,
    inverse_mass_matrix: Any,
    z_info: Any,
    rng_key: Array,
) -> Array:
    """Hoffman & Gelman's heuristic (NumPyro's ``find_reasonable_step_size``): double or
    halve the step size until one leapfrog step crosses acceptance 0.8."""
    z, _, pe, z_grad = z_info
    sqrt = _sqrt_of_inverse(inverse_mass_matrix)
    metric = euclidean_metric(inverse_mass_matrix, sqrt, sqrt, z, kinetic_fn)
    logdensity = _negate(potential_fn, forward_mode)
    step = integrators.velocity_verlet(logdensity, metric.kinetic_energy)
    target = jnp.log(0.8)
    finfo = jnp.finfo(jnp.result_type(init_step_size))  # type: ignore[no-untyped-call]
    grad = jax.tree_util.tree_map(jnp.negative, z_grad)

    def body(state: tuple[Any, ...]) -> tuple[Any, ...]:
        step_size, _, direction, key = state
        key, key_momentum = random.split(key)
        step_size = (2.0**direction) * step_size
        r = metric.sample_momentum(key_momentum, z)
        new = step(integrators.IntegratorState(z, r, -pe, grad), step_size)
        delta = (-new.logdensity + metric.kinetic_energy(new.momentum)) - (
            pe + metric.kinetic_energy(r)
        )
        return step_size, direction, jnp.where(target < -delta, 1, -1), key

    def cond(state: tuple[Any, ...]) -> Array:
        step_size, last, direction, _ = state
        not_small = (step_size > finfo.tiny) | (direction >= 0)
        not_large = (step_size < finfo.max) | (direction <= 0)
        return jnp.asarray(not_small & not_large & ((last == 0) | (direction == last)))

    zero = jnp.array(0, jnp.int32)
    out = lax.while_loop(cond, body, (jnp.asarray(init_step_size), zero, zero, rng_key))
    return jnp.asarray(out[0])


def _sqrt_of_inverse(inverse_mass_matrix: Any) -> Any:
    """``M^{1/2}`` of an inverse mass matrix layout (for the step-size heuristic)."""
    if isinstance(inverse_mass_matrix, dict):
        return {
            k: (
                jnp.reciprocal(jnp.sqrt(v))
                if v.ndim == 1
                else jnp.linalg.cholesky(jnp.linalg.inv(v))
            )
            for k, v in inverse_mass_matrix.items()
        }
    dense = jnp.ndim(inverse_mass_matrix) == 2
    size = jnp.shape(inverse_mass_matrix)[-1]
    return initialize_mass_matrix(jnp.zeros(size), inverse_mass_matrix, dense)[1]
