"""The associative (parallel-in-time) Kalman filter in square-root form, depth ``O(log T)``.

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

Here ``C`` is carried as a square root ``U`` (``C = U Uᵀ``), as in the square-root
parallel filters of Yaghoobi et al. (2022), and the non-symmetric ``I + C_i J_j`` is
never solved: by the Woodbury identity ``M = I - U_i G⁻¹ U_iᵀ J_j`` and
``M C_i = U_i G⁻¹ U_iᵀ`` with ``G = I + U_iᵀ J_j U_i``, which is symmetric and at least
``I``, so its Cholesky factor ``Γ`` is always well conditioned; then
``U = tria([A_j U_i Γ⁻ᵀ, U_j])``. ``J`` stays in information form, symmetrised.

The first element folds in the prior of ``x_0``: ``A = 0``, ``J = 0``, ``(b, U)`` the
filtered moments of ``x_1``. Elements are built for every step at once with the
update of the sequential filter (Joseph form, square roots). The marginal
likelihood is not accumulated through the scan (as dynamax's parallel filter does,
with a solve against ``C``): once every filtered moment is known, each step's
predictive term ``log N(y_t | H (F m_t + c) + d, H P⁻ Hᵀ + U Uᵀ)`` is computed for
all ``t`` at once and summed pairwise.
"""

import jax.numpy as jnp
from jax import lax
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
    tria,
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
    """The ``(A, b, U, η, J)`` of every step, the first holding the prior of ``x_0``."""
    t = chain.num_steps
    n = chain.init_mean.shape[-1]
    dtype = chain.init_mean.dtype
    h, u = _masked(chain)
    f = jnp.broadcast_to(chain.f, (t, n, n))
    c = jnp.broadcast_to(chain.c, (t, n))
    s = jnp.broadcast_to(chain.s, (t, n, n))
    # Step 0 predicts x_1 from the prior: transition matrix 0, noise root [F L_0, S].
    c = c.at[0].set(mv(f[0], chain.init_mean) + c[0])
    s0 = jnp.concatenate([mm(f[0], chain.init_scale), s[0]], axis=-1)
    s = jnp.concatenate([s, jnp.zeros((t, n, n), dtype)], axis=-1).at[0].set(s0)
    f = f.at[0].set(jnp.zeros((n, n), dtype))
    d = chain.d

    hs = mm(h, s)
    l_s = cholesky(mm(hs, mt(hs)) + mm(u, mt(u)))
    innovation = chain.y - mv(h, c) - d
    e = solve_lower_vec(l_s, innovation)
    gain = mt(solve_upper_t(l_s, solve_lower(l_s, mm(hs, mt(s)))))  # S (H S)ᵀ (Ls Lsᵀ)⁻¹
    i_kh = jnp.eye(n, dtype=dtype) - mm(gain, h)
    a = mm(i_kh, f)
    b = c + mv(gain, innovation)
    root = tria(
        jnp.concatenate([mm(i_kh, s), mm(gain, jnp.broadcast_to(u, (t, *u.shape[1:])))], axis=-1)
    )
    wf = mm(solve_lower(l_s, h), f)  # Ls⁻¹ H F
    return a, b, root, mv(mt(wf), e), mm(mt(wf), wf)


def _combine(earlier: Element, later: Element) -> Element:
    a1, b1, u1, eta1, j1 = earlier
    a2, b2, u2, eta2, j2 = later
    n = a1.shape[-1]
    r = mm(mt(u1), j2)  # U_iᵀ J_j
    gamma = cholesky(jnp.eye(n, dtype=a1.dtype) + mm(r, u1))  # G = Γ Γᵀ
    y = solve_lower(gamma, r)  # Γ⁻¹ U_iᵀ J_j
    v = mt(solve_lower(gamma, mt(mm(a2, u1))))  # A_j U_i Γ⁻ᵀ
    a2m = a2 - mm(v, y)  # A_j M
    m_a1 = a1 - mm(u1, solve_upper_t(gamma, mm(y, a1)))  # M A_i
    a = mm(a2m, a1)
    b = mv(a2m, b1) + mv(v, solve_lower_vec(gamma, mv(mt(u1), eta2))) + b2
    root = tria(jnp.concatenate([v, u2], axis=-1))
    eta = mv(mt(m_a1), eta2 - mv(j2, b1)) + eta1
    j = symmetrize(mm(mm(mt(m_a1), j2), a1) + j1)
    return a, b, root, eta, j


def _pack(element: Element) -> Array:
    a, b, root, eta, j = element
    return jnp.concatenate([a, b[..., None], root, eta[..., None], j], axis=-1)


def _unpack(packed: Array) -> Element:
    n = packed.shape[-2]
    a, b, root = packed[..., :n], packed[..., n], packed[..., n + 1 : 2 * n + 1]
    eta, j = packed[..., 2 * n + 1], packed[..., 2 * n + 2 :]
    return a, b, root, eta, j


def _packed_combine(earlier: Array, later: Array) -> Array:
    return _pack(_combine(_unpack(earlier), _unpack(later)))


def associative_filter(chain: Chain) -> tuple[Array, Array, Array]:
    """The associative filter of one chain: ``(log-likelihood, means (T, n), roots (T, n, n))``.

    The five parts of an element travel as one ``(n, 3n + 2)`` array: the scan slices
    and concatenates its operands at every level, and one operand instead of five
    made the compilation measurably faster.
    """
    _, means, roots, _, _ = _unpack(lax.associative_scan(_packed_combine, _pack(_elements(chain))))
    return predictive_log_likelihood(chain, means, roots), means, roots


def predictive_log_likelihood(chain: Chain, means: Array, roots: Array) -> Array:
    """``Σ_t log N(y_t | H (F m_t + c) + d, H P⁻ Hᵀ + U Uᵀ)`` for all ``t`` at once.

    ``(m_t, L_t)`` are the filtered mean and square root of ``x_t``: the prior for
    ``t = 0``, then ``means[:-1]``, ``roots[:-1]``; ``P⁻ = R Rᵀ`` with ``R = [F L_t, S]``.
    """
    h, u = _masked(chain)
    m = jnp.concatenate([chain.init_mean[None], means[:-1]], axis=0)
    lower = jnp.concatenate([tria(chain.init_scale)[None], roots[:-1]], axis=0)
    f = chain.f
    s = jnp.broadcast_to(chain.s, (m.shape[0], *chain.s.shape[1:]))
    hl = mm(h, jnp.concatenate([mm(f, lower), s], axis=-1))  # H [F L_t, S], a root of H P⁻ Hᵀ
    l_s = cholesky(mm(hl, mt(hl)) + mm(u, mt(u)))
    w = solve_lower_vec(l_s, chain.y - mv(h, mv(f, m) + chain.c) - chain.d)
    k = chain.y.shape[-1]
    log_liks = -0.5 * jnp.sum(w * w, axis=-1) - log_abs_det_tril(l_s) - 0.5 * k * LOG_2PI
    if chain.mask is not None:
        log_liks = log_liks * chain.mask
    return jnp.sum(log_liks)
