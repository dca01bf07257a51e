"""Log-semiring and max-plus products of batched square matrices.

The two semirings used by every chain contraction:

- log (sum-product): ``a ⊗ b = log(exp(a) @ exp(b))``,
- max-plus (max-product, tropical): ``(a ⊗ b)[i, j] = max_k a[i, k] + b[k, j]``.

Internal helpers shared by the other kernel modules live here too. They never
produce ``NaN`` from ``-inf`` entries, in value or gradient: maxima used as
shifts are wrapped in ``lax.stop_gradient`` (the results are exactly invariant to
them, so the gradient through the shift is zero) and replaced by 0 where they are
not finite, and logarithms of zero take the "double where" path so that their
gradient is 0 rather than ``inf * 0``.
"""

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, ArrayLike, Float

__all__ = ["log_matmul", "max_matmul"]

# Products whose contracted size is at most this use an exact broadcast
# log-sum-exp: no underflow at all, and on CPU within 2x of the rescaled matmul
# (faster at 4 states, where XLA's small batched dot is slow; measured in a tree
# reduction). Larger ones go through the max-rescaled matmul (see `log_matmul`).
_EXACT_MAX_SIZE = 4

HIGHEST = lax.Precision.HIGHEST
"""Matmul precision for every kernel: float32 stays float32 on GPU/TPU (no TF32/bf16)."""


def finite_or_zero(x: Array) -> Array:
    """``x`` where finite, else 0: a shift that never turns ``-inf - -inf`` into NaN."""
    return jnp.where(jnp.isfinite(x), x, jnp.zeros_like(x))


def safe_log(x: Array) -> Array:
    """``log(x)`` for ``x >= 0``, ``-inf`` at 0 with a zero (not NaN) gradient there."""
    positive = x > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, x, jnp.ones_like(x))), -jnp.inf)


def shift(x: Array, axis: int | tuple[int, ...]) -> Array:
    """Stop-gradient maximum of ``x`` over ``axis`` (kept), 0 where it is not finite."""
    return finite_or_zero(lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True)))


def logsumexp(x: Array, axis: int | tuple[int, ...]) -> Array:
    """``log(sum(exp(x), axis))``, stable, ``-inf``-safe in value and gradient."""
    m = shift(x, axis)
    return safe_log(jnp.sum(jnp.exp(x - m), axis=axis)) + jnp.squeeze(m, axis)


def log_matmul(
    a: Float[ArrayLike, "*#batch state state"], b: Float[ArrayLike, "*#batch state state"]
) -> Float[Array, "*#batch state state"]:
    """Product of two batched log-matrices in the log semiring.

    ``out[..., i, j] = log Σ_k exp(a[..., i, k] + b[..., k, j])``.

    For more than four states this is one matmul of rescaled exponentials: with
    ``m_k = max_j b[k, j]`` and ``c[i, k] = a[i, k] + m_k``,
    ``out[i, j] = max_k c[i, k] + log Σ_k exp(c[i, k] - max_k c[i, k]) exp(b[k, j] - m_k)``.
    The largest term of every row is exactly 1 before the logarithm, so a row
    never underflows as a whole; an entry more than ~87 nats (float32) below the
    largest of its row may come out as ``-inf``. At most four states the product
    is an exact broadcast log-sum-exp. Leading batch dimensions broadcast.

    Args:
        a: left factor, ``-inf`` allowed (a zero weight).
        b: right factor, same dtype as ``a``.

    Returns:
        The log-semiring product, ``-inf`` where no path has positive weight.

    Example:
        >>> import jax.numpy as jnp
        >>> from plait.kernels import log_matmul
        >>> a = jnp.log(jnp.array([[1.0, 2.0], [3.0, 4.0]]))
        >>> jnp.exp(log_matmul(a, a)).round(4)
        Array([[ 7., 10.],
               [15., 22.]], dtype=float32)
    """
    a, b = _broadcast_batch(a, b)
    if a.shape[-1] <= _EXACT_MAX_SIZE:
        return logsumexp(a[..., :, :, None] + b[..., None, :, :], axis=-2)
    mb = lax.stop_gradient(jnp.max(b, axis=-1, keepdims=True))
    eb = jnp.exp(b - finite_or_zero(mb))
    # Fold b's row maxima into a before choosing a's shift, so that the term
    # that dominates each output row is exactly 1 (the unsafe -inf maxima keep
    # the dead rows of b out of the shift).
    c = a + jnp.swapaxes(mb, -1, -2)
    mc = shift(c, -1)
    prod = jnp.matmul(jnp.exp(c - mc), eb, precision=HIGHEST)
    return safe_log(prod) + mc


def max_matmul(
    a: Float[ArrayLike, "*#batch state state"], b: Float[ArrayLike, "*#batch state state"]
) -> Float[Array, "*#batch state state"]:
    """Product of two batched log-matrices in the max-plus (tropical) semiring.

    ``out[..., i, j] = max_k a[..., i, k] + b[..., k, j]``: the best two-step path
    score. Exact (no exponentials). Leading batch dimensions broadcast.

    Args:
        a: left factor, ``-inf`` allowed (a forbidden transition).
        b: right factor, same dtype as ``a``.

    Returns:
        The max-plus product.

    Example:
        >>> import jax.numpy as jnp
        >>> from plait.kernels import max_matmul
        >>> a = jnp.array([[0.0, -1.0], [-jnp.inf, -2.0]])
        >>> max_matmul(a, a)
        Array([[ 0., -1.],
               [-inf, -4.]], dtype=float32)
    """
    a, b = _broadcast_batch(a, b)
    return jnp.max(a[..., :, :, None] + b[..., None, :, :], axis=-2)


def normalized_log_combine(x: tuple[Array, Array], y: tuple[Array, Array]) -> tuple[Array, Array]:
    """Associative log-semiring product of ``(matrix, log scale)`` pairs.

    A pair ``(M, s)`` stands for the log-matrix ``M + s`` with ``max M = 0``, so
    that the matrix part stays O(1) however long the product: the float32 rounding
    of a log-matrix that has grown to ``|M| ~ 1e5`` would cost 1e-2 in every
    entry. ``s`` has shape ``(*batch, 1, 1)``.
    """
    product = log_matmul(x[0], y[0])
    n = shift(product, (-2, -1))
    return product - n, x[1] + y[1] + n


def normalized_max_combine(x: tuple[Array, Array], y: tuple[Array, Array]) -> tuple[Array, Array]:
    """Max-plus analogue of `normalized_log_combine`."""
    product = max_matmul(x[0], y[0])
    n = shift(product, (-2, -1))
    return product - n, x[1] + y[1] + n


def _broadcast_batch(a: ArrayLike, b: ArrayLike) -> tuple[Array, Array]:
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise ValueError(
            f"expected matrices (..., n, k) and (..., k, m) with matching k; got shapes "
            f"{a.shape} and {b.shape}."
        )
    if a.dtype != b.dtype:
        raise TypeError(
            f"both factors must have the same dtype; got {a.dtype} and {b.dtype}. "
            "Cast one with .astype()."
        )
    batch = jnp.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return (
        jnp.broadcast_to(a, batch + a.shape[-2:]),
        jnp.broadcast_to(b, batch + b.shape[-2:]),
    )
