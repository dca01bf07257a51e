"""The Rauch-Tung-Striebel smoother and backward sampling, sequential or associative.

Both run backwards on the filtered moments ``(m_t, L_t)`` of ``x_0, ..., x_T``
(``x_0``'s are the prior). Given ``x_{t+1}``, the state ``x_t`` is Gaussian with an
affine mean (Rauch, Tung & Striebel 1965)::

    x_t | x_{t+1}, y ~ N(E_t x_{t+1} + g_t, Z_t Z_tᵀ)
    E_t = P_t Fᵀ (P⁻)⁻¹,  g_t = m_t - E_t (F m_t + c),  Z_t Z_tᵀ = P_t - E_t P⁻ E_tᵀ,

and all three come from one ``tria`` per step, for every step at once (square-root
form, so ``Z_t`` is a valid factor however close to singular)::

    tria([[F L_t, S], [L_t, 0]]) = [[L⁻, 0], [E_t L⁻, Z_t]].

The smoothed moments compose these maps from ``x_T ~ N(m_T, L_T L_Tᵀ)`` back:
``m^s_t = E_t m^s_{t+1} + g_t``, ``L^s_t = tria([E_t L^s_{t+1}, Z_t])``; a reverse
``lax.scan`` or a reverse ``lax.associative_scan`` of the element composition
``(E, g, Z)_earlier ∘ (E, g, Z)_later = (E_e E_l, E_e g_l + g_e, tria([E_e Z_l, Z_e]))``
(Särkkä & García-Fernández 2021, §5). A draw replaces each ``N(g_t, Z_t Z_tᵀ)`` by a
sample ``h_t = g_t + Z_t ε_t`` and composes the affine maps ``x ↦ E_t x + h_t`` the
same two ways (the same noise gives the same path, up to rounding).
"""

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array

from plait.kernels._kalman_types import Chain
from plait.kernels._linalg import mm, mt, mv, solve_upper_t, tria

__all__: list[str] = []


def backward_elements(chain: Chain, means: Array, lowers: Array) -> tuple[Array, Array, Array]:
    """``(E, g, Z)`` for ``t = 0..T``, the last being ``(0, m_T, L_T)``.

    ``means`` ``(T, n)`` and ``lowers`` ``(T, n, n)`` are the filtered moments of
    ``x_1..x_T``.
    """
    n = chain.init_mean.shape[-1]
    m = jnp.concatenate([chain.init_mean[None], means[:-1]], axis=0)
    lower = jnp.concatenate([tria(chain.init_scale)[None], lowers[:-1]], axis=0)
    t = m.shape[0]
    f = jnp.broadcast_to(chain.f, (t, n, n))
    s = jnp.broadcast_to(chain.s, (t, n, n))
    pre = jnp.concatenate(
        [
            jnp.concatenate([mm(f, lower), s], axis=-1),
            jnp.concatenate([lower, jnp.zeros_like(s)], axis=-1),
        ],
        axis=-2,
    )
    post = tria(pre)
    l_pred, cross, z = post[:, :n, :n], post[:, n:, :n], post[:, n:, n:]
    gain = mt(solve_upper_t(l_pred, mt(cross)))  # (E L⁻) L⁻⁻¹
    g = m - mv(gain, mv(f, m) + chain.c)
    zero = jnp.zeros((1, n, n), means.dtype)
    return (
        jnp.concatenate([gain, zero], axis=0),
        jnp.concatenate([g, means[-1:]], axis=0),
        jnp.concatenate([z, lowers[-1:]], axis=0),
    )


def _compose(
    later: tuple[Array, Array, Array], earlier: tuple[Array, Array, Array]
) -> tuple[Array, Array, Array]:
    e_l, g_l, z_l = later
    e_e, g_e, z_e = earlier
    return mm(e_e, e_l), mv(e_e, g_l) + g_e, tria(jnp.concatenate([mm(e_e, z_l), z_e], axis=-1))


def smooth(elements: tuple[Array, Array, Array], strategy: str) -> tuple[Array, Array]:
    """Smoothed means ``(T+1, n)`` and square roots ``(T+1, n, n)`` of ``x_0..x_T``."""
    gain, g, z = elements
    if strategy == "sequential":

        def step(
            carry: tuple[Array, Array], el: tuple[Array, Array, Array]
        ) -> tuple[tuple[Array, Array], tuple[Array, Array]]:
            mean, lower = carry
            e_t, g_t, z_t = el
            new = (mv(e_t, mean) + g_t, tria(jnp.concatenate([mm(e_t, lower), z_t], axis=-1)))
            return new, new

        last = (g[-1], z[-1])
        _, (means, lowers) = lax.scan(step, last, (gain[:-1], g[:-1], z[:-1]), reverse=True)
        return (
            jnp.concatenate([means, last[0][None]], axis=0),
            jnp.concatenate([lowers, last[1][None]], axis=0),
        )
    _, means, lowers = lax.associative_scan(_compose, elements, reverse=True)
    return means, lowers


def draw(gain: Array, h: Array, strategy: str) -> Array:
    """The path ``x_0..x_T`` from ``x_T = h_T``, ``x_t = E_t x_{t+1} + h_t``."""
    if strategy == "sequential":

        def step(x: Array, el: tuple[Array, Array]) -> tuple[Array, Array]:
            new = mv(el[0], x) + el[1]
            return new, new

        _, earlier = lax.scan(step, h[-1], (gain[:-1], h[:-1]), reverse=True)
        return jnp.concatenate([earlier, h[-1:]], axis=0)

    def compose(later: tuple[Array, Array], earlier: tuple[Array, Array]) -> tuple[Array, Array]:
        return mm(earlier[0], later[0]), mv(earlier[0], later[1]) + earlier[1]

    path: Array = lax.associative_scan(compose, (gain, h), reverse=True)[1]
    return path
