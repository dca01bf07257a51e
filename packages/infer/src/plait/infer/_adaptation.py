"""Stan's window adaptation of the step size and mass matrix, as NumPyro runs it.

NumPyro's ``warmup_adapter`` (numpyro/infer/hmc_util.py) step for step, because warm-up
robustness is judged against it: the same window schedule (75 / 25·2^k / 50 steps, or
15% / 75% / 10% for short warm-ups), the same dual averaging (t0 = 10, kappa = 0.75,
gamma = 0.05, restarted after each window at ``log(10 · step_size)`` from the *last
iterate*), the same Welford estimate with Stan's regularisation
``n/(n+5) · cov + 1e-3 · 5/(n+5)``, and block-structured mass matrices keyed by tuples of
site names. BlackJAX's pieces differ in small ways that matter on hard posteriors (its
dual averaging averages the previous iterate and its window restart starts from the
averaged step size), so they are not used here; the transition kernels are BlackJAX's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeAlias

import jax.numpy as jnp
import numpy as np
from jax import Array, lax, random
from jax.flatten_util import ravel_pytree
from jax.scipy.linalg import solve_triangular

__all__ = [
    "AdaptWindow",
    "DualAveragingState",
    "HMCAdaptState",
    "build_adaptation_schedule",
    "dual_averaging",
    "initialize_mass_matrix",
    "warmup_adapter",
    "welford_covariance",
]

Blocks: TypeAlias = dict[tuple[str, ...], Any]
"""Per-block values of a structured mass matrix, keyed by a tuple of site names."""


class AdaptWindow(NamedTuple):
    """A warm-up window: steps ``start`` to ``end`` inclusive."""

    start: int
    end: int


class DualAveragingState(NamedTuple):
    """Nesterov's dual averaging: iterate, its weighted average, the averaged gradient,
    the step count and the proximal centre (``log(10 · step_size)``)."""

    x_t: Array
    x_avg: Array
    g_avg: Array
    t: Array
    prox_center: Array


class HMCAdaptState(NamedTuple):
    """The warm-up state of one chain (NumPyro's fields).

    Fields:
        step_size: the step size of the next transition.
        inverse_mass_matrix: the inverse mass matrix (an array, or a dict of blocks keyed
            by tuples of site names when the kernel has a model).
        mass_matrix_sqrt: ``M^{1/2}`` (a Cholesky factor when dense), same layout.
        mass_matrix_sqrt_inv: ``M^{-1/2}``, same layout.
        ss_state: the dual averaging state.
        mm_state: the Welford state ``(mean, m2, n)`` (per block).
        window_idx: the index of the current window in the schedule.
        rng_key: the key of the step-size heuristic.
    """

    step_size: Array
    inverse_mass_matrix: Any
    mass_matrix_sqrt: Any
    mass_matrix_sqrt_inv: Any
    ss_state: DualAveragingState
    mm_state: Any
    window_idx: Array
    rng_key: Array


def dual_averaging(
    t0: float = 10, kappa: float = 0.75, gamma: float = 0.05
) -> tuple[Callable[..., DualAveragingState], Callable[..., DualAveragingState]]:
    """``(init(prox_center), update(g, state))`` of dual averaging (Hoffman & Gelman 2014).

    ``update`` sets ``x_t = prox_center - sqrt(t) / gamma · mean(g)`` and averages the
    iterates with weight ``t^-kappa``.

    Example:
        >>> init, update = dual_averaging()
        >>> state = update(0.5, init(0.0))
        >>> round(float(state.x_t), 4)  # -(1 / 0.05) * 0.5 / 11
        -0.9091
    """

    def init(prox_center: Any = 0.0) -> DualAveragingState:
        zero = jnp.zeros(())
        center = jnp.asarray(prox_center, zero.dtype)
        return DualAveragingState(zero, zero, zero, jnp.array(0, jnp.int32), center)

    def update(g: Any, state: DualAveragingState) -> DualAveragingState:
        x_t, x_avg, g_avg, t, prox_center = state
        t = t + 1
        tf = t.astype(x_t.dtype)
        g_avg = (1 - 1 / (tf + t0)) * g_avg + g / (tf + t0)
        x_t = prox_center - jnp.sqrt(tf) / gamma * g_avg
        weight = tf ** (-kappa)
        x_avg = (1 - weight) * x_avg + weight * x_t
        return DualAveragingState(x_t, x_avg, g_avg, t, prox_center)

    return init, update


def welford_covariance(
    diagonal: bool = True,
) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    """``(init(size), update(sample, state), final(state, regularize))`` of Welford's
    online (co)variance, per block when ``size`` is a dict of block shapes.

    ``final`` returns ``(cov, cov^{-1/2}, cov^{1/2})``: with ``regularize``, Stan's
    ``n/(n+5) · cov + 1e-3 · 5/(n+5) · I``.

    Example:
        >>> init, update, final = welford_covariance()
        >>> state = init(1)
        >>> for x in (1.0, 2.0, 3.0):
        ...     state = update(jnp.array([x]), state)
        >>> final(state)[0]
        Array([1.], dtype=float32)
    """

    def init(size: Any) -> Any:
        if isinstance(size, dict):
            return {names: init(block) for names, block in size.items()}
        shape = ((size,) if diagonal else (size, size)) if isinstance(size, int) else tuple(size)
        return jnp.zeros(shape[-1]), jnp.zeros(shape), jnp.array(0, jnp.int32)

    def update(sample: Any, state: Any) -> Any:
        if isinstance(state, dict):
            return {
                names: update(tuple(sample[k] for k in names), block)
                for names, block in state.items()
            }
        flat, _ = ravel_pytree(sample)
        mean, m2, n = state
        n = n + 1
        delta_pre = flat - mean
        mean = mean + delta_pre / n
        delta_post = flat - mean
        m2 = m2 + (delta_pre * delta_post if m2.ndim == 1 else jnp.outer(delta_post, delta_pre))
        return mean, m2, n

    def final(state: Any, regularize: bool = False) -> tuple[Any, Any, Any]:
        if isinstance(state, dict):
            parts = {names: final(block, regularize) for names, block in state.items()}
            return tuple({k: v[i] for k, v in parts.items()} for i in range(3))  # type: ignore[return-value]
        mean, m2, n = state
        cov = m2 / (n - 1)
        if regularize:
            scaled = (n / (n + 5)) * cov
            shrinkage = 1e-3 * (5 / (n + 5))
            cov = (
                scaled + shrinkage if cov.ndim == 1 else scaled + shrinkage * jnp.eye(mean.shape[0])
            )
        if cov.ndim == 2:
            tril_inv = _cholesky_of_inverse_transposed(cov)
            cov_inv_sqrt = solve_triangular(tril_inv, jnp.eye(cov.shape[-1]), lower=True)
        else:
            tril_inv = jnp.sqrt(cov)
            cov_inv_sqrt = jnp.reciprocal(tril_inv)
        return cov, cov_inv_sqrt, tril_inv

    return init, update, final


def _cholesky_of_inverse_transposed(matrix: Array) -> Array:
    """``L^T`` with ``L`` the Cholesky factor of ``matrix^{-1}``, without an inverse
    (NumPyro's flipped Cholesky)."""
    return jnp.swapaxes(jnp.linalg.cholesky(matrix[..., ::-1, ::-1])[..., ::-1, ::-1], -2, -1)


def build_adaptation_schedule(num_steps: int) -> list[AdaptWindow]:
    """Stan's warm-up windows: a fast start buffer, slow windows doubling in length, a
    fast end buffer (NumPyro's ``build_adaptation_schedule``).

    Example:
        >>> [tuple(w) for w in build_adaptation_schedule(300)]
        [(0, 74), (75, 99), (100, 149), (150, 249), (250, 299)]
    """
    if num_steps < 20:
        return [AdaptWindow(0, num_steps - 1)]
    start_buffer, end_buffer, init_window = 75, 50, 25
    if start_buffer + end_buffer + init_window > num_steps:
        start_buffer = int(0.15 * num_steps)
        end_buffer = int(0.1 * num_steps)
        init_window = num_steps - start_buffer - end_buffer
    schedule = [AdaptWindow(0, start_buffer - 1)]
    end_window_start = num_steps - end_buffer
    next_size, next_start = init_window, start_buffer
    while next_start < end_window_start:
        start, size = next_start, next_size
        if 3 * size <= end_window_start - start:
            next_size = 2 * size
        else:
            size = end_window_start - start
        next_start = start + size
        schedule.append(AdaptWindow(start, next_start - 1))
    schedule.append(AdaptWindow(end_window_start, num_steps - 1))
    return schedule


def initialize_mass_matrix(
    z: Any, inverse_mass_matrix: Any, dense_mass: bool | Sequence[tuple[str, ...]]
) -> tuple[Any, Any, Any]:
    """``(inverse_mass_matrix, mass_matrix_sqrt, mass_matrix_sqrt_inv)`` at the start.

    With ``dense_mass`` a list of blocks (tuples of site names), the result is a dict of
    blocks: the dense blocks listed, any block given in ``inverse_mass_matrix`` (a dict)
    kept, and one diagonal block for the remaining sites (in sorted order). Otherwise
    ``z`` is one flat vector and the matrix is an array (1-D diagonal, 2-D dense); a
    missing ``inverse_mass_matrix`` is the identity.

    Raises:
        ValueError: a block names a site ``z`` does not have, or a site is in two blocks.
    """
    if not isinstance(dense_mass, bool):
        given: dict[tuple[str, ...], Any]
        if inverse_mass_matrix is None:
            given = {}
        elif isinstance(inverse_mass_matrix, Mapping):
            given = {tuple(k): v for k, v in inverse_mass_matrix.items()}
        else:
            given = {tuple(sorted(z)): inverse_mass_matrix}
        imm: Blocks = {}
        sqrt: Blocks = {}
        sqrt_inv: Blocks = {}
        blocks = [(tuple(b), True) for b in dense_mass]
        blocks += [(b, False) for b in given if b not in {tuple(d) for d in dense_mass}]
        for names, dense in blocks:
            missing = [k for k in names if k not in z]
            if missing:
                raise ValueError(
                    f"the mass matrix block {names} names {missing}, which are not latent "
                    f"sites of the model (its sites: {sorted(z)})."
                )
            block = tuple(z[k] for k in names)
            imm[names], sqrt[names], sqrt_inv[names] = initialize_mass_matrix(
                block, given.get(names), dense
            )
        covered = [k for names in imm for k in names]
        if len(covered) != len(set(covered)):
            raise ValueError(
                f"a site appears in two mass matrix blocks: {list(imm)}; each latent site "
                "belongs to one block of dense_mass / inverse_mass_matrix."
            )
        rest = tuple(sorted(set(z) - set(covered)))
        if rest:
            imm[rest], sqrt[rest], sqrt_inv[rest] = initialize_mass_matrix(
                tuple(z[k] for k in rest), None, False
            )
        return imm, sqrt, sqrt_inv

    size = int(jnp.size(ravel_pytree(z)[0]))
    if inverse_mass_matrix is None:
        imm_arr = jnp.eye(size) if dense_mass else jnp.ones(size)
        return imm_arr, imm_arr, imm_arr
    imm_arr = jnp.asarray(inverse_mass_matrix)
    if imm_arr.shape[-1] != size:
        raise ValueError(
            f"inverse_mass_matrix has shape {imm_arr.shape}, but the latent space has "
            f"{size} dimensions."
        )
    if dense_mass:
        if imm_arr.ndim == 1:
            imm_arr = jnp.diag(imm_arr)
        sqrt_inv_arr = _cholesky_of_inverse_transposed(imm_arr)
        sqrt_arr = solve_triangular(sqrt_inv_arr, jnp.eye(size), lower=True)
        return imm_arr, sqrt_arr, sqrt_inv_arr
    if imm_arr.ndim == 2:
        imm_arr = jnp.diag(imm_arr)
    sqrt_inv_arr = jnp.sqrt(imm_arr)
    return imm_arr, jnp.reciprocal(sqrt_inv_arr), sqrt_inv_arr


def _sizes(inverse_mass_matrix: Any) -> Any:
    if isinstance(inverse_mass_matrix, dict):
        return {k: v.shape for k, v in inverse_mass_matrix.items()}
    return inverse_mass_matrix.shape


StepSizeSearch: TypeAlias = Callable[[Array, Any, Any, Array], Array]
"""``(step_size, inverse_mass_matrix, z_info, rng_key) -> step_size``."""


def warmup_adapter(
    num_adapt_steps: int,
    find_reasonable_step_size: StepSizeSearch | None = None,
    adapt_step_size: bool = True,
    adapt_mass_matrix: bool = True,
    dense_mass: bool | Sequence[tuple[str, ...]] = False,
    target_accept_prob: float = 0.8,
    regularize_mass_matrix: bool = True,
) -> tuple[Callable[..., HMCAdaptState], Callable[..., HMCAdaptState]]:
    """``(init_fn(z_info, rng_key, step_size, inverse_mass_matrix), update_fn(t,
    accept_prob, z_info, state))`` of NumPyro's warm-up.

    ``update_fn`` runs dual averaging on ``target_accept_prob - accept_prob`` (the last
    warm-up step takes the averaged step size), accumulates the Welford estimate inside
    the slow windows, and at each slow window's end sets the regularised estimate,
    restarts the estimate and restarts dual averaging at ``log(10 · step_size)``.
    ``z_info`` is ``(z, r, potential_energy, z_grad)``.
    """
    search = find_reasonable_step_size
    ss_init, ss_update = dual_averaging()
    diagonal = dense_mass is False or (not isinstance(dense_mass, bool) and not dense_mass)
    mm_init, mm_update, mm_final = welford_covariance(diagonal=diagonal)
    schedule = build_adaptation_schedule(num_adapt_steps)
    num_windows = len(schedule)
    window_ends = np.asarray([w.end for w in schedule], np.int32)  # a constant, never traced

    def init_fn(
        z_info: Any, rng_key: Array, step_size: Any = 1.0, inverse_mass_matrix: Any = None
    ) -> HMCAdaptState:
        rng_key, key_ss = random.split(rng_key)
        imm, sqrt, sqrt_inv = initialize_mass_matrix(z_info[0], inverse_mass_matrix, dense_mass)
        step_size = jnp.asarray(step_size, jnp.result_type(float))
        if adapt_step_size and search is not None:
            step_size = search(step_size, imm, z_info, key_ss)
        ss_state = ss_init(jnp.log(10 * step_size))
        return HMCAdaptState(
            step_size,
            imm,
            sqrt,
            sqrt_inv,
            ss_state,
            mm_init(_sizes(imm)),
            jnp.array(0, jnp.int32),
            rng_key,
        )

    def window_end(z_info: Any, key_ss: Array, state: HMCAdaptState) -> HMCAdaptState:
        step_size, imm, sqrt, sqrt_inv, ss_state, mm_state, window_idx, rng_key = state
        if adapt_mass_matrix:
            imm, sqrt, sqrt_inv = mm_final(mm_state, regularize=regularize_mass_matrix)
            mm_state = mm_init(_sizes(imm))
        if adapt_step_size:
            if search is not None:
                step_size = search(step_size, imm, z_info, key_ss)
            # log(10) + log(step) stays finite where log(10 * step) would overflow.
            ss_state = ss_init(jnp.log(10.0) + jnp.log(step_size))
        return HMCAdaptState(
            step_size, imm, sqrt, sqrt_inv, ss_state, mm_state, window_idx, rng_key
        )

    def update_fn(t: Array, accept_prob: Array, z_info: Any, state: HMCAdaptState) -> HMCAdaptState:
        step_size, imm, sqrt, sqrt_inv, ss_state, mm_state, window_idx, rng_key = state
        rng_key, key_ss = random.split(rng_key)
        if adapt_step_size:
            ss_state = ss_update(target_accept_prob - accept_prob, ss_state)
            step_size = jnp.where(
                t == num_adapt_steps - 1, jnp.exp(ss_state.x_avg), jnp.exp(ss_state.x_t)
            )
            finfo = jnp.finfo(jnp.result_type(step_size))  # type: ignore[no-untyped-call]
            step_size = jnp.clip(step_size, finfo.tiny, finfo.max)
        is_middle = (window_idx > 0) & (window_idx < num_windows - 1)
        if adapt_mass_matrix:
            z = z_info[0]
            mm_state = lax.cond(is_middle, lambda s: mm_update(z, s), lambda s: s, mm_state)
        at_end = t == jnp.asarray(window_ends)[jnp.minimum(window_idx, num_windows - 1)]
        window_idx = jnp.where(at_end, window_idx + 1, window_idx)
        state = HMCAdaptState(
            step_size, imm, sqrt, sqrt_inv, ss_state, mm_state, window_idx, rng_key
        )
        return lax.cond(  # type: ignore[no-any-return]
            at_end & is_middle, lambda s: window_end(z_info, key_ss, s), lambda s: s, state
        )

    return init_fn, update_fn
