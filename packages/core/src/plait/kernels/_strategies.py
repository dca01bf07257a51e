"""The three ways to contract a chain: sequential, tree and associative.

Each works in the log or the max-plus semiring and keeps its running quantity
normalised, so that float32 stays accurate at any length: see ``README.md``.
"""

from collections.abc import Callable

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array

from plait.kernels._semiring import (
    HIGHEST,
    finite_or_zero,
    logsumexp,
    normalized_log_combine,
    normalized_max_combine,
    safe_log,
    shift,
)
from plait.kernels._types import Chain, ChainResult, FilterResult, Semiring

# A batched vector-matrix product of at most this many states is a broadcast
# multiply-and-sum (one fused loop), above it a matmul.
_SMALL_STATES = 8

Advance = Callable[[Array, Array], tuple[Array, Array | None]]


def _max(x: Array, axis: int | tuple[int, ...]) -> Array:
    return jnp.max(x, axis=axis)


REDUCE: dict[str, Callable[[Array, int | tuple[int, ...]], Array]] = {
    "log": logsumexp,
    "max": _max,
}
_COMBINE = {"log": normalized_log_combine, "max": normalized_max_combine}


def normalize(messages: Array, semiring: Semiring) -> Array:
    """Messages minus their log-sum-exp (log) or maximum (max) over the state."""
    return messages - finite_or_zero(REDUCE[semiring](messages, -1))[..., None]


def sequential(
    chain: Chain, semiring: Semiring, *, keep: bool
) -> tuple[Array, Array, Array | None]:
    """Forward recursion with a normalised carry, one ``lax.scan`` step a step.

    ``l_{t+1}(j) = reduce_i(l_t(i) + steps[t, i, j]) - n_t`` with ``n_t`` the
    (stop-gradient) maximum of the new message, so the carry stays in
    ``[-inf, 0]``; ``log Z = n_init + Σ_t n_t + reduce_j(l_T(j))``, the ``n_t``
    stacked as scan outputs and summed by one ``jnp.sum`` (pairwise, outside the
    carry). Dense steps are done in log space (``S^2`` exponentials a step): on
    CPU that is as fast as a rescaled probability-space step for general step
    matrices, since those need the same exponentials in a separate pass over
    memory, and it never underflows. A shared transition is exponentiated once
    (rows rescaled by their maxima, which are carried in log space).

    Returns:
        ``(log_normalizer, normalised final message, normalised messages of
        x_1..x_T or None)``.
    """
    reduce = REDUCE[semiring]
    init = chain.init
    m0 = shift(init, -1)
    advance, xs = _advance(chain, semiring)

    def step(carry: Array, x_t: Array) -> tuple[Array, tuple[Array, Array | None]]:
        new, offset = advance(carry, x_t)
        n = shift(new, -1)[..., 0]
        new = new - n[..., None]
        return new, (n if offset is None else n + offset, new if keep else None)

    last, (norms, messages) = lax.scan(step, init - m0, xs)
    final_total = reduce(last, -1)
    total = m0[..., 0] + jnp.sum(norms, axis=0) + final_total
    final = last - finite_or_zero(final_total)[..., None]
    if messages is None:
        return total, final, None
    return total, final, normalize(jnp.moveaxis(messages, 0, -2), semiring)


def _advance(chain: Chain, semiring: Semiring) -> tuple[Advance, Array]:
    """One step's unnormalised message (and an extra log offset), and the scanned inputs."""
    reduce = REDUCE[semiring]
    if chain.emission is None or not chain.shared:
        xs = jnp.moveaxis(chain.dense(), -3, 0)

        def dense(carry: Array, step_t: Array) -> tuple[Array, Array | None]:
            return reduce(carry[..., :, None] + step_t, -2), None

        return dense, xs
    transition = chain.transition[..., 0, :, :]
    xs = jnp.moveaxis(chain.emission, -2, 0)
    if semiring == "max":

        def shared_max(carry: Array, e_t: Array) -> tuple[Array, Array | None]:
            return jnp.max(carry[..., :, None] + transition, axis=-2) + e_t, None

        return shared_max, xs
    row_max = lax.stop_gradient(jnp.max(transition, axis=-1))  # -inf on dead rows
    scaled = jnp.exp(transition - finite_or_zero(row_max)[..., None])
    small = chain.num_states <= _SMALL_STATES

    def shared_log(carry: Array, e_t: Array) -> tuple[Array, Array | None]:
        # exp(transition) = diag(exp(row_max)) @ scaled, with diag folded into
        # the log-space carry so that its largest term is exactly 1.
        x = carry + row_max
        m = shift(x, -1)
        w = jnp.exp(x - m)
        if small:
            u = jnp.sum(w[..., :, None] * scaled, axis=-2)
        else:
            u = jnp.matmul(w[..., None, :], scaled, precision=HIGHEST)[..., 0, :]
        return safe_log(u) + e_t, m[..., 0]

    return shared_log, xs


def tree(chain: Chain, semiring: Semiring) -> ChainResult:
    """Pairwise reduction of the step matrices, ``ceil(log2 T)`` levels.

    A level multiplies neighbours ``(0, 1), (2, 3), ...``; with an odd count the
    last matrix waits for the next level. Every product is a normalised
    ``(matrix, log scale)`` pair (`normalized_log_combine`), so the scales are
    summed pairwise and the matrices stay O(1).
    """
    combine = _COMBINE[semiring]
    reduce = REDUCE[semiring]
    steps = chain.dense()
    s = shift(steps, (-2, -1))
    matrices, scales = steps - s, s
    n = steps.shape[-3]
    while n > 1:
        half = n // 2
        even = (matrices[..., 0 : 2 * half : 2, :, :], scales[..., 0 : 2 * half : 2, :, :])
        odd = (matrices[..., 1 : 2 * half : 2, :, :], scales[..., 1 : 2 * half : 2, :, :])
        new_matrices, new_scales = combine(even, odd)
        if n % 2:
            new_matrices = jnp.concatenate([new_matrices, matrices[..., -1:, :, :]], axis=-3)
            new_scales = jnp.concatenate([new_scales, scales[..., -1:, :, :]], axis=-3)
        matrices, scales = new_matrices, new_scales
        n = half + n % 2
    final = reduce(chain.init[..., :, None] + matrices[..., 0, :, :], -2)
    final_total = reduce(final, -1)
    return ChainResult(
        scales[..., 0, 0, 0] + final_total, final - finite_or_zero(final_total)[..., None]
    )


def associative(chain: Chain, semiring: Semiring) -> FilterResult:
    """Prefix products by ``lax.associative_scan`` (Blelloch 1990), depth ``O(log T)``.

    ``P_t = steps[0] ⊗ ... ⊗ steps[t]`` as normalised ``(matrix, log scale)``
    pairs; the forward message of ``x_{t+1}`` is ``init ⊗ P_t``, for every ``t``
    at once after the scan.
    """
    reduce = REDUCE[semiring]
    steps = chain.dense()
    s = shift(steps, (-2, -1))
    matrices, scales = lax.associative_scan(_COMBINE[semiring], (steps - s, s), axis=steps.ndim - 3)
    messages = reduce(chain.init[..., None, :, None] + matrices, -2)
    message_totals = reduce(messages, -1)
    total = scales[..., -1, 0, 0] + message_totals[..., -1]
    return FilterResult(total, messages - finite_or_zero(message_totals)[..., None])
