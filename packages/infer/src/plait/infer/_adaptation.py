"""Stan's window adaptation of the step size and mass matrix, one step at a time.

Built from BlackJAX's pieces (dual averaging, Welford mass-matrix estimation, Stan's
schedule), as ``blackjax.window_adaptation`` is, but stepped by plait's own compiled
loop so that warm-up can run in chunks (progress bar) from a cached compilation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.adaptation.mass_matrix import mass_matrix_adaptation
from blackjax.adaptation.step_size import dual_averaging_adaptation
from blackjax.adaptation.window_adaptation import build_schedule
from jax import Array, lax
from jax.flatten_util import ravel_pytree

__all__ = ["AdaptState", "WindowAdaptation", "schedule"]


class AdaptState(NamedTuple):
    """The warm-up state of one chain: dual averaging, mass-matrix estimation, and the
    current step size and inverse mass matrix."""

    ss_state: Any
    imm_state: Any
    step_size: Array
    inverse_mass_matrix: Array


def schedule(num_warmup: int, adapt_mass_matrix: bool) -> Array:
    """Stan's schedule: ``(stage, window_end)`` per step; stage 0 fast, 1 slow.

    Example:
        >>> s = schedule(100, adapt_mass_matrix=True)
        >>> s.shape, int(s[:, 1].sum())  # one slow window ends
        ((100, 2), 1)
    """
    if num_warmup <= 0:
        return jnp.zeros((0, 2), jnp.int32)
    if not adapt_mass_matrix:
        return jnp.zeros((num_warmup, 2), jnp.int32)
    return jnp.asarray(build_schedule(num_warmup), jnp.int32)


class WindowAdaptation(NamedTuple):
    """``init(position, step_size)``, ``update(state, stage, window_end, position,
    acceptance_rate)`` and ``final(state) -> (step_size, inverse_mass_matrix)``."""

    init: Callable[[Any, Any], AdaptState]
    update: Callable[[AdaptState, Array, Array, Any, Array], AdaptState]
    final: Callable[[AdaptState], tuple[Array, Array]]


def window_adaptation(
    *,
    dense_mass: bool,
    target_accept_prob: float,
    adapt_step_size: bool,
    adapt_mass_matrix: bool,
) -> WindowAdaptation:
    """The three functions of Stan's warm-up (see :class:`WindowAdaptation`)."""
    mm_init, mm_update, mm_final = mass_matrix_adaptation(not dense_mass)
    da_init, da_update, da_final = dual_averaging_adaptation(target_accept_prob)

    def init(position: Any, step_size: Any) -> AdaptState:
        flat = ravel_pytree(position)[0]
        imm_state = mm_init(flat.shape[0])
        step = jnp.asarray(step_size, flat.dtype)
        state = AdaptState(da_init(step), imm_state, step, imm_state.inverse_mass_matrix)
        # Python floats in the initial states would come back from a compiled warm-up step
        # as float arrays: make them arrays now, so that the step compiles once.
        return jax.tree_util.tree_map(  # type: ignore[no-any-return]
            lambda x: jnp.asarray(x, flat.dtype) if isinstance(x, float) else x, state
        )

    def adapt_step(state: AdaptState, acceptance_rate: Array) -> AdaptState:
        if not adapt_step_size:
            return state
        ss_state = da_update(state.ss_state, acceptance_rate)
        return state._replace(ss_state=ss_state, step_size=jnp.exp(ss_state.log_step_size))

    def slow(state: AdaptState, position: Any, acceptance_rate: Array) -> AdaptState:
        state = state._replace(imm_state=mm_update(state.imm_state, position))
        return adapt_step(state, acceptance_rate)

    def window_end(state: AdaptState) -> AdaptState:
        imm_state = mm_final(state.imm_state)
        state = state._replace(
            imm_state=imm_state, inverse_mass_matrix=imm_state.inverse_mass_matrix
        )
        if not adapt_step_size:
            return state
        ss_state = da_init(da_final(state.ss_state))
        return state._replace(ss_state=ss_state, step_size=jnp.exp(ss_state.log_step_size))

    def update(
        state: AdaptState, stage: Array, is_end: Array, position: Any, acceptance_rate: Array
    ) -> AdaptState:
        if not adapt_mass_matrix:
            return adapt_step(state, acceptance_rate)
        state = lax.cond(
            stage == 0,
            lambda s: adapt_step(s, acceptance_rate),
            lambda s: slow(s, position, acceptance_rate),
            state,
        )
        return lax.cond(is_end.astype(bool), window_end, lambda s: s, state)  # type: ignore[no-any-return]

    def final(state: AdaptState) -> tuple[Array, Array]:
        step_size = (
            jnp.exp(state.ss_state.log_step_size_avg) if adapt_step_size else state.step_size
        )
        return step_size.astype(state.step_size.dtype), state.inverse_mass_matrix

    return WindowAdaptation(init, update, final)
