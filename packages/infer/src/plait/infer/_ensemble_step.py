"""The ensemble samplers' step, as pure functions of the whole ensemble.

The walkers are the rows of ``z`` (``(num_chains, D)``, unconstrained and flattened);
their log densities are carried beside them, so each walker's density is computed once
per move. A step (optionally) permutes the walkers, then updates the first half using
the second and the second using the (updated) first, as NumPyro's ``EnsembleSampler``.

- AIES (Goodman & Weare 2010; Foreman-Mackey et al. 2013): a move proposes a point and a
  log factor; Metropolis-Hastings accepts it with ``min(1, exp(factor) π(y)/π(x))``.
- ESS (Karamanis & Beutler 2021): a move proposes a direction per walker, and a
  univariate slice along it (stepping out, then shrinkage; Neal 2003) is BlackJAX's
  slice kernel. The scale ``μ`` of the directions is tuned from the numbers of
  expansions and contractions, ``μ ← 2 n_exp / (n_exp + n_con)``, once per step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.mcmc import slice as bj_slice
from jax import Array, lax, random

__all__ = [
    "AIESState",
    "ESSState",
    "EnsembleSamplerState",
    "aies_update",
    "ensemble_step",
    "ess_update",
]

Move = Callable[..., Any]
LogDensity = Callable[[Array], Array]


class EnsembleSamplerState(NamedTuple):
    """The state of an ensemble (NumPyro's fields, and the walkers' log densities).

    Fields:
        z: the walkers' unconstrained values, each with a leading ``num_chains`` dim.
        inner_state: the sampler's own state (:class:`AIESState` or :class:`ESSState`).
        rng_key: the key of the next step.
        log_density: the log density of each walker, ``(num_chains,)`` (``None`` in a
            state built with NumPyro's three fields: computed at the next step).
    """

    z: Any
    inner_state: Any
    rng_key: Array
    log_density: Any = None


class AIESState(NamedTuple):
    """The inner state of :class:`AIES` (NumPyro's fields).

    Fields:
        i: the iteration (half-integers between the two half-updates).
        accept_prob: the fraction of accepted proposals in the last half-update.
        mean_accept_prob: the running mean of ``accept_prob`` over the half-updates.
        rng_key: the key of the next half-update.
    """

    i: Array
    accept_prob: Array
    mean_accept_prob: Array
    rng_key: Array


class ESSState(NamedTuple):
    """The inner state of :class:`ESS` (NumPyro's fields).

    Fields:
        i: the iteration (half-integers between the two half-updates).
        n_expansions: the slice expansions in the current step (for tuning ``mu``).
        n_contractions: the slice contractions in the current step.
        mu: the scale of the directions.
        rng_key: the key of the next half-update.
    """

    i: Array
    n_expansions: Array
    n_contractions: Array
    mu: Array
    rng_key: Array


def _running_mean(mean: Array, value: Array, i: Array, num_warmup: int) -> Array:
    """The mean of the half-updates so far (restarted after warm-up); ``i`` is the
    iteration before this half-update."""
    count = 2 * jnp.where(i < num_warmup, i, i - num_warmup) + 1
    return mean + (value - mean) / count


def _choose(rng_key: Array, moves: Sequence[Move], weights: Array, *args: Any) -> Any:
    if len(moves) == 1:
        return moves[0](*args)
    index = random.choice(rng_key, len(moves), p=weights)
    return lax.switch(index, list(moves), *args)


def aies_update(
    active: Array,
    log_density: Array,
    inactive: Array,
    state: AIESState,
    *,
    batch_log_density: LogDensity,
    moves: Sequence[Move],
    weights: Array,
    num_warmup: int,
) -> tuple[Array, Array, AIESState]:
    """One AIES half-update of ``active`` (``(n, D)``, log densities ``log_density``)
    from the complementary walkers ``inactive``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from plait.infer._moves import StretchMove
        >>> ld = lambda z: -0.5 * jnp.sum(z**2, -1)
        >>> active, inactive = jnp.zeros((3, 2)), jnp.ones((3, 2))
        >>> state = AIESState(jnp.array(0.0), jnp.array(0.0), jnp.array(0.0), jax.random.key(0))
        >>> new, new_ld, state = aies_update(active, ld(active), inactive, state,
        ...     batch_log_density=ld, moves=[StretchMove()], weights=jnp.ones(1), num_warmup=5)
        >>> bool(jnp.allclose(new_ld, ld(new))), float(state.i)
        (True, 0.5)
    """
    rng_key, move_key, proposal_key, accept_key = random.split(state.rng_key, 4)
    proposal, factors = _choose(move_key, moves, weights, proposal_key, active, inactive)
    proposal_ld = batch_log_density(proposal)
    log_accept_prob = factors + proposal_ld - log_density
    accepted = random.uniform(accept_key, (active.shape[0],), log_density.dtype) < jnp.exp(
        log_accept_prob
    )
    new = jnp.where(accepted[:, None], proposal, active)
    new_ld = jnp.where(accepted, proposal_ld, log_density)
    accept_prob = jnp.mean(accepted.astype(log_density.dtype))
    mean = _running_mean(state.mean_accept_prob, accept_prob, state.i, num_warmup)
    return new, new_ld, AIESState(state.i + 0.5, accept_prob, mean, rng_key)


def _slice_along(
    rng_key: Array,
    position: Array,
    log_density: Array,
    direction: Array,
    logdensity_fn: LogDensity,
    max_steps: int,
    max_iter: int,
) -> tuple[Array, Array, Array, Array]:
    """BlackJAX's univariate slice (stepping out with unit width, then shrinkage)
    through ``position`` along ``direction``: new point, its log density, expansions,
    contractions."""
    kernel = bj_slice.build_kernel(
        interval=bj_slice.stepping_out, max_expansions=max_steps, max_shrinkage=max_iter
    )

    def along(_key: Array, start: Array, fn: LogDensity) -> Callable[[Array], Any]:
        def slice_fn(t: Array) -> tuple[bj_slice.SliceState, Array]:
            point = start + t * direction
            return bj_slice.SliceState(point, fn(point)), jnp.asarray(True)

        return slice_fn

    state = bj_slice.SliceState(position, log_density)
    new, info = kernel(rng_key, state, logdensity_fn, along, 1.0)
    # BlackJAX counts every shrinkage evaluation; the accepted one is no contraction.
    contractions = info.num_shrink - info.is_accepted.astype(info.num_shrink.dtype)
    return new.position, new.logdensity, info.num_expansions, contractions


def ess_update(
    active: Array,
    log_density: Array,
    inactive: Array,
    state: ESSState,
    *,
    logdensity_fn: LogDensity,
    moves: Sequence[Move],
    weights: Array,
    max_steps: int,
    max_iter: int,
    tune_mu: bool,
) -> tuple[Array, Array, ESSState]:
    """One ESS half-update: a slice along each walker's direction.

    ``logdensity_fn`` is the log density of one walker (a ``(D,)`` vector).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from plait.infer._moves import DifferentialMove
        >>> ld = lambda z: -0.5 * jnp.sum(z**2, -1)
        >>> active, inactive = jnp.zeros((3, 2)), jnp.eye(3, 2)
        >>> state = ESSState(jnp.array(0.0), jnp.array(0), jnp.array(0), jnp.array(1.0),
        ...                  jax.random.key(0))
        >>> new, new_ld, state = ess_update(active, ld(active), inactive, state,
        ...     logdensity_fn=ld, moves=[DifferentialMove()], weights=jnp.ones(1),
        ...     max_steps=100, max_iter=100, tune_mu=True)
        >>> bool(jnp.allclose(new_ld, ld(new))), float(state.i)
        (True, 0.5)
    """
    rng_key, move_key, dir_key, slice_key = random.split(state.rng_key, 4)
    directions = _choose(move_key, moves, weights, dir_key, inactive, state.mu)
    keys = random.split(slice_key, active.shape[0])

    def slice_one(k: Array, x: Array, ld: Array, d: Array) -> tuple[Array, Array, Array, Array]:
        return _slice_along(k, x, ld, d, logdensity_fn, max_steps, max_iter)

    slices = jax.vmap(slice_one)(keys, active, log_density, directions)
    new, new_ld, expansions, contractions = slices
    n_expansions = state.n_expansions + jnp.sum(expansions).astype(state.n_expansions.dtype)
    n_contractions = state.n_contractions + jnp.sum(contractions).astype(state.n_contractions.dtype)
    itr = state.i + 0.5
    mu = state.mu
    if tune_mu:
        # After both halves (a whole step), as NumPyro: at least one expansion counted.
        full = itr % 1 == 0
        safe = jnp.maximum(1, n_expansions)
        mu = jnp.where(full, 2.0 * safe / (safe + n_contractions), mu).astype(mu.dtype)
        n_expansions = jnp.where(full, 0, n_expansions)
        n_contractions = jnp.where(full, 0, n_contractions)
    return new, new_ld, ESSState(itr, n_expansions, n_contractions, mu, rng_key)


HalfUpdate = Callable[[Array, Array, Array, Any], tuple[Array, Array, Any]]


def ensemble_step(
    rng_key: Array,
    z: Array,
    log_density: Array,
    inner_state: Any,
    update: HalfUpdate,
    *,
    randomize_split: bool,
) -> tuple[Array, Array, Any]:
    """Update the first half of the walkers ``z`` (``(num_chains, D)``) from the second,
    then the second from the first, after a random permutation if ``randomize_split``.

    ``update(active, active_log_density, inactive, inner_state)`` returns the updated
    half, its log densities and the new inner state. The permutation is undone at the
    end, so that each walker keeps its row (NumPyro leaves the walkers permuted; the
    ensemble is the same, but here each row is a Markov chain of its own).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> shift = lambda a, ld, other, s: (a + other.mean(0), ld, s + 1)
        >>> z, ld, count = ensemble_step(jax.random.key(0), jnp.arange(4.0)[:, None],
        ...     jnp.zeros(4), jnp.array(0), shift, randomize_split=False)
        >>> z[:, 0].tolist(), int(count)
        ([2.5, 3.5, 5.0, 6.0], 2)
    """
    num_chains = z.shape[0]
    half = num_chains // 2
    order = random.permutation(rng_key, num_chains) if randomize_split else None
    if order is not None:
        z, log_density = z[order], log_density[order]

    def half_update(i: Array, carry: tuple[Array, Array, Any]) -> tuple[Array, Array, Any]:
        z, log_density, inner_state = carry
        start, other = i * half, (1 - i) * half
        active = lax.dynamic_slice_in_dim(z, start, half)
        active_ld = lax.dynamic_slice_in_dim(log_density, start, half)
        inactive = lax.dynamic_slice_in_dim(z, other, half)
        active, active_ld, inner_state = update(active, active_ld, inactive, inner_state)
        z = lax.dynamic_update_slice_in_dim(z, active, start, 0)
        log_density = lax.dynamic_update_slice_in_dim(log_density, active_ld, start, 0)
        return z, log_density, inner_state

    z, log_density, inner_state = lax.fori_loop(0, 2, half_update, (z, log_density, inner_state))
    if order is not None:
        inverse = jnp.argsort(order)
        z, log_density = z[inverse], log_density[inverse]
    return z, log_density, inner_state
