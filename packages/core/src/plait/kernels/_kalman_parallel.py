"""The associative (parallel-in-time) Kalman filter, depth ``O(log T)``.

Särkkä & García-Fernández (2021), "Temporal Parallelization of Bayesian Smoothers",
§4: step ``t`` becomes an element ``(A, b, C, η, J)`` standing for the two Gaussian
potentials

    p(x_{t+1} | x_t, y_t) = N(A x_t + b, C),     p(y_t | x_t) ∝ exp(-½ xᵀ J x + ηᵀ x),

and the filtering distributions are the prefixes of ``lax.associative_scan`` over the
operator that combines an earlier element ``i`` with a later one ``j``::

    M = (I + C_i J_j)⁻¹
    A = A_j M A_i                 b = A_j M (b_i + C_i η_j) + b_j
    C = A_j M C_i A_jᵀ + C_j      η = A_iᵀ Mᵀ (η_j - J_j b_i) + η_i
    J = A_iᵀ Mᵀ J_j A_i + J_i

(one LU factorisation of ``I + C_i J_j`` serves both solves). The first element
folds in the prior of ``x_0``: ``A = 0``, ``J = 0``, ``(b, C)`` the filtered moments of
``x_1``. Elements are built for every step at once, with the innovation covariance
factored by Cholesky, ``J = (W F)ᵀ (W F)`` with ``W = Ls⁻¹ H`` and the conditional
covariance in Joseph form ``C = X Xᵀ + Y Yᵀ``, so both are positive semi-definite by
construction; the combine symmetrises ``C`` and ``J``.

The marginal likelihood is not accumulated through the scan (as dynamax's parallel
filter does, with a solve against ``C``): once every filtered moment is known, each
step's predictive term ``log N(y_t | H (F m_t + c) + d, H (F P_t Fᵀ + S Sᵀ) Hᵀ + U Uᵀ)``
is computed for all ``t`` at once and summed pairwise.
"""

import jax.numpy as jnp
from jax import lax
from jax.scipy.linalg import lu_factor, lu_solve
from jaxtyping import Array

from plait.kernels._kalman_sequential import LOG_2PI
from plait.kernels._kalman_types import Chain
from plait.kernels._linalg import (
    cholesky,
    log_abs_det_tril,
    mm,
    mt,
    mv,
    solve_lower,
    solve_lower_vec,
    solve_upper_t,
    symmetrize,
)

__all__: list[str] = []

Element = tuple[Array, Array, Array, Array, Array]


def _masked(chain: Chain) -> tuple[Array, Array]:
    """``H`` zeroed and ``U`` set to the identity where masked, with a time axis."""
    if chain.mask is None:
        return chain.h, chain.u
    observed = chain.mask[:, None, None]
    k = chain.u.shape[-1]
    h = chain.h * observed
    u = jnp.where(observed > 0, chain.u, jnp.eye(k, dtype=chain.u.dtype))
    return h, u


def _elements(chain: Chain) -> Element:
    """The ``(A, b, C, η, J)`` of every step, the first holding the prior of ``x_0``."""
    t = chain.num_steps
    n = chain.init_mean.shape[-1]
    dtype = chain.init_mean.dtype
    h, u = _masked(chain)
    f = jnp.broadcast_to(chain.f, (t, n, n))
    c = jnp.broadcast_to(chain.c, (t, n))
    s = jnp.broadcast_to(chain.s, (t, n, n))
    # Step 0 predicts x_1 from the prior: transition matrix 0, noise F P_0 Fᵀ + S Sᵀ.
    f0 = f[0]
    c = c.at[0].set(mv(f0, chain.init_mean) + c[0])
    s0 = jnp.concatenate([mm(f0, chain.init_scale), s[0]], axis=-1)  # n x 2n root
    f = f.at[0].set(jnp.zeros((n, n), dtype))
    s = jnp.concatenate([s, jnp.zeros((t, n, n), dtype)], axis=-1).at[0].set(s0)
    h = jnp.broadcast_to(h, (t, *h.shape[1:]))
    d = jnp.broadcast_to(chain.d, (t, chain.d.shape[-1]))
    u = jnp.broadcast_to(u, (t, *u.shape[1:]))

    hs = mm(h, s)  # H S, k x 2n
    l_s = cholesky(mm(hs, mt(hs)) + mm(u, mt(u)))  # innovation covariance H Q Hᵀ + U Uᵀ
    w = solve_lower(l_s, h)  # Ls⁻¹ H
    innovation = chain.y - mv(h, c) - d
    e = solve_lower_vec(l_s, innovation)  # Ls⁻¹ (y - H c - d)
    # K = Q Hᵀ S⁻¹ = S (H S)ᵀ Ls⁻ᵀ Ls⁻¹
    gain = mt(solve_upper_t(l_s, solve_lower(l_s, mm(hs, mt(s)))))
    eye = jnp.eye(n, dtype=dtype)
    i_kh = eye - mm(gain, h)
    x, y = mm(i_kh, s), mm(gain, u)
    a = mm(i_kh, f)
    b = c + mv(gain, innovation)
    cov = mm(x, mt(x)) + mm(y, mt(y))
    wf = mm(w, f)
    eta = mv(mt(wf), e)
    j = mm(mt(wf), wf)
    return a, b, cov, eta, j


def _combine(earlier: Element, later: Element) -> Element:
    a1, b1, c1, eta1, j1 = earlier
    a2, b2, c2, eta2, j2 = later
    n = a1.shape[-1]
    lu = lu_factor(jnp.eye(n, dtype=a1.dtype) + mm(c1, j2))
    # A_j M = (Mᵀ A_jᵀ)ᵀ with Mᵀ = (I + C_i J_j)⁻ᵀ, and A_iᵀ (I + J_j C_i)⁻¹ = (M A_i)ᵀ.
    a2m = mt(lu_solve(lu, mt(a2), trans=1))
    m_a1 = lu_solve(lu, a1)  # M A_i
    a = mm(a2m, a1)
    b = mv(a2m, b1 + mv(c1, eta2)) + b2
    cov = symmetrize(mm(mm(a2m, c1), mt(a2)) + c2)
    eta = mv(mt(m_a1), eta2 - mv(j2, b1)) + eta1
    j = symmetrize(mm(mm(mt(m_a1), j2), a1) + j1)
    return a, b, cov, eta, j


def associative_filter(chain: Chain) -> tuple[Array, Array, Array]:
    """The associative filter of one chain: ``(log-likelihood, means (T, n), covs (T, n, n))``."""
    _, means, covs, _, _ = lax.associative_scan(_combine, _elements(chain))
    return predictive_log_likelihood(chain, means, covs), means, covs


def predictive_log_likelihood(chain: Chain, means: Array, covs: Array) -> Array:
    """``Σ_t log N(y_t | H (F m_t + c) + d, H (F P_t Fᵀ + S Sᵀ) Hᵀ + U Uᵀ)``, all ``t`` at once.

    ``(m_t, P_t)`` are the filtered moments of ``x_t``: the prior for ``t = 0``, then
    ``means[:-1]``, ``covs[:-1]``.
    """
    h, u = _masked(chain)
    m = jnp.concatenate([chain.init_mean[None], means[:-1]], axis=0)
    p0 = mm(chain.init_scale, mt(chain.init_scale))
    p = jnp.concatenate([p0[None], covs[:-1]], axis=0)
    m_pred = mv(chain.f, m) + chain.c
    p_pred = mm(mm(chain.f, p), mt(chain.f)) + mm(chain.s, mt(chain.s))
    hp = mm(h, p_pred)
    l_s = cholesky(mm(hp, mt(h)) + mm(u, mt(u)))
    w = solve_lower_vec(l_s, chain.y - mv(h, m_pred) - chain.d)
    k = chain.y.shape[-1]
    log_liks = -0.5 * jnp.sum(w * w, axis=-1) - log_abs_det_tril(l_s) - 0.5 * k * LOG_2PI
    if chain.mask is not None:
        log_liks = log_liks * chain.mask
    return jnp.sum(log_liks)
