"""The square-root Kalman filter, one ``lax.scan`` step per time step.

The carry is the filtered mean ``m_t`` and a lower-triangular square root ``L_t`` of
the filtered covariance of ``x_t``. A step predicts and then conditions on ``y_t``,
each by one ``tria`` (QR) of a pre-array (Kailath, Sayed & Hassibi 2000, §12.3)::

    L⁻ = tria([F L_t, S])                           P⁻ = F P_t Fᵀ + S Sᵀ
    tria([[U, H L⁻], [0, L⁻]]) = [[Ls, 0], [K̄, L_{t+1}]]
    m_{t+1} = F m_t + c + K̄ Ls⁻¹ (y_t - H (F m_t + c) - d)
    log p(y_t | y_{<t}) = -½ |Ls⁻¹ e_t|² - log |det Ls| - (k/2) log 2π

where ``Ls Lsᵀ = H P⁻ Hᵀ + U Uᵀ`` is the innovation covariance and ``K̄ Ls⁻¹`` the
Kalman gain. No covariance is ever formed, so it stays positive semi-definite in
float32 however ill-conditioned it gets. A masked step zeroes ``H`` (and sets ``U = I``),
which makes the update an exact no-op. The per-step log-likelihoods are scan outputs,
summed pairwise by one ``jnp.sum``.
"""

from collections.abc import Callable, Sequence

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array

from plait.kernels._kalman_types import Chain
from plait.kernels._linalg import log_abs_det_tril, mm, mv, solve_lower_vec, tria

__all__: list[str] = []

LOG_2PI = 1.8378770664093453


def per_step(arrays: Sequence[Array]) -> tuple[tuple[Array | None, ...], Callable[..., tuple[Array, ...]]]:
    """Scan inputs for the step fields of time size ``T``; a getter for one step's values.

    A field of time size 1 is closed over (shared by every step), not scanned.
    """
    varying = tuple(a.shape[0] != 1 for a in arrays)
    xs = tuple(a if v else None for a, v in zip(arrays, varying, strict=True))

    def at(xs_t: Sequence[Array | None]) -> tuple[Array, ...]:
        return tuple(
            x if v and x is not None else a[0]
            for a, x, v in zip(arrays, xs_t, varying, strict=True)
        )

    return xs, at


def observe_update(
    m_pred: Array, l_pred: Array, h: Array, d: Array, u: Array, y: Array, observed: Array | None
) -> tuple[Array, Array, Array]:
    """Conditions ``N(m_pred, l_pred l_predᵀ)`` on ``y ~ N(h x + d, u uᵀ)``.

    Returns ``(mean, square root, log N(y | h m_pred + d, h P hᵀ + u uᵀ))``; where
    ``observed`` is 0 the inputs come back unchanged with log-likelihood 0.
    """
    n, k = m_pred.shape[-1], y.shape[-1]
    if observed is not None:
        h = h * observed
        u = jnp.where(observed > 0, u, jnp.eye(k, dtype=u.dtype))
    pre = jnp.concatenate(
        [
            jnp.concatenate([u, mm(h, l_pred)], axis=-1),
            jnp.concatenate([jnp.zeros((n, k), u.dtype), l_pred], axis=-1),
        ],
        axis=-2,
    )
    post = tria(pre)
    l_s, gain, l_new = post[:k, :k], post[k:, :k], post[k:, k:]
    w = solve_lower_vec(l_s, y - mv(h, m_pred) - d)
    log_lik = -0.5 * jnp.sum(w * w) - log_abs_det_tril(l_s) - 0.5 * k * LOG_2PI
    if observed is not None:
        log_lik = log_lik * observed
    return m_pred + mv(gain, w), l_new, log_lik


def sequential_filter(chain: Chain, *, keep: bool) -> tuple[Array, Array | None, Array | None]:
    """The square-root filter of one chain.

    Returns ``(log-likelihood, filtered means (T, n), filtered square roots (T, n, n))``,
    the last two None unless ``keep``.
    """
    steps = (chain.f, chain.c, chain.s, chain.h, chain.d, chain.u)
    xs, at = per_step(steps)
    mask_xs = chain.mask

    def step(
        carry: tuple[Array, Array], inputs: tuple[tuple[Array | None, ...], Array, Array | None]
    ) -> tuple[tuple[Array, Array], tuple[Array, Array | None, Array | None]]:
        m, lower = carry
        step_xs, y, observed = inputs
        f, c, s, h, d, u = at(step_xs)
        m_pred = mv(f, m) + c
        l_pred = tria(jnp.concatenate([mm(f, lower), s], axis=-1))
        m_new, l_new, log_lik = observe_update(m_pred, l_pred, h, d, u, y, observed)
        return (m_new, l_new), (log_lik, m_new if keep else None, l_new if keep else None)

    init = (chain.init_mean, tria(chain.init_scale))
    _, (log_liks, means, lowers) = lax.scan(step, init, (xs, chain.y, mask_xs))
    return jnp.sum(log_liks), means, lowers
