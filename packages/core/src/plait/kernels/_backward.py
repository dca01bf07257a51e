"""The sequential sum-product of a chain with a shared transition, backwards, rescaled.

``β_{t-1}(i) = Σ_j A(i, j) exp(b_t(j)) β_t(j)`` from ``β_T = 1``: a factor over the first
state. In probability space with a normalised running vector (the "seq_scaled" kernel of
BENCHMARKS.md §1): the transition and the emissions are exponentiated once, vectorised,
after subtracting stop-gradient maxima (``exp(A) = diag(r) P`` with ``P``'s rows and ``r``
at most 1), and each step is one matrix-vector product and a sum. The per-step log
normalisers are summed outside the loop (pairwise, by ``jnp.sum``).

The general chain kernels (:func:`chain_logsumexp`) keep their carry in log space, which
costs an ``exp`` and a ``log`` per state per step; at a handful of states that is a third of
the step. plait-enum's enumerated ``scan`` uses this form for a transition shared over time
under the sequential strategy, and :func:`chain_logsumexp` for every other case.
"""

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

__all__ = ["shared_backward"]

_SMALL_STATES = 8


def _shift(x: Array, axis: int | tuple[int, ...]) -> Array:
    m = lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    return jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m))


def _log(x: Array) -> Array:
    positive = x > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, x, jnp.ones_like(x))), -jnp.inf)


def shared_backward(
    transition: Float[Array, "*#batch state state"],
    emission: Float[Array, "*#batch time state"],
) -> Float[Array, "*batch state"]:
    """``log β_0``: the chain summed over ``x_1..x_T`` given the first state ``x_0``.

    ``log β_0(i) = log Σ_{x_1..x_T} exp(Σ_t transition[x_{t-1}, x_t] + emission[t, x_t])``.

    Args:
        transition: ``transition[..., i, j]``, log-weights shared by every step.
        emission: ``emission[..., t, j]``, log-weights of the state after step ``t``.

    Returns:
        ``log β_0``, over the first state.

    Example:
        >>> import jax.numpy as jnp
        >>> from plait.kernels import shared_backward
        >>> a = jnp.log(jnp.array([[0.9, 0.1], [0.2, 0.8]]))
        >>> e = jnp.zeros((5, 2))
        >>> jnp.round(jnp.exp(shared_backward(a, e)), 5)  # rows of a stochastic matrix
        Array([1., 1.], dtype=float32)
    """
    batch = jnp.broadcast_shapes(transition.shape[:-2], emission.shape[:-2])
    transition = jnp.broadcast_to(transition, batch + transition.shape[-2:])
    emission = jnp.broadcast_to(emission, batch + emission.shape[-2:])
    num = transition.shape[-1]
    g = _shift(transition, (-2, -1))
    row = _shift(transition - g, -1)
    scaled = jnp.exp(transition - g - row)  # rows of P: largest entry 1
    r = jnp.exp(row[..., 0])  # per-row weights, at most 1
    m = _shift(emission, -1)
    lik = jnp.moveaxis(jnp.exp(emission - m), -2, 0)
    small = num <= _SMALL_STATES

    def step(beta: Array, lik_t: Array) -> tuple[Array, Array]:
        w = lik_t * beta
        if small:
            v = jnp.sum(scaled * w[..., None, :], axis=-1)
        else:
            v = jnp.matmul(scaled, w[..., None], precision=lax.Precision.HIGHEST)[..., 0]
        v = r * v
        n = jnp.sum(v, axis=-1, keepdims=True)
        return v / n, _log(n[..., 0])

    ones = jnp.ones((*batch, num), transition.dtype)
    beta, logs = lax.scan(step, ones, lik, reverse=True)
    steps = emission.shape[-2]
    offset = jnp.sum(logs, axis=0) + jnp.sum(m[..., 0], axis=-1) + steps * g[..., 0, 0]
    return _log(beta) + offset[..., None]
