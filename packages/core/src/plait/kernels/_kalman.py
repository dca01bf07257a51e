"""Kalman filtering, RTS smoothing and path sampling of linear-Gaussian chains.

The chain (see `AffineGaussian`)::

    x_0     ~ N(μ_0, L_0 L_0ᵀ)
    x_{t+1} ~ N(F_t x_t + c_t, S_t S_tᵀ)          t = 0..T-1
    y_t     ~ N(H_t x_{t+1} + d_t, U_t U_tᵀ)      where mask[t]

Strategies (static): ``"sequential"`` (a square-root filter in ``lax.scan``, depth
``T``), ``"associative"`` (the parallel-in-time form of Särkkä & García-Fernández
2021 in ``lax.associative_scan``, depth ``O(log T)``, about ``n`` times the work) and
``"auto"`` (`auto_strategy` with ``prefix=True``: sequential on CPU). See
``README.md`` in this folder.
"""

import math
from typing import cast

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from plait.kernels._chain import auto_strategy
from plait.kernels._kalman_parallel import associative_filter
from plait.kernels._kalman_sequential import sequential_filter
from plait.kernels._kalman_types import (
    AffineGaussian,
    Chain,
    GaussianPath,
    KalmanFilterResult,
    KalmanSmootherResult,
    KalmanStrategy,
    in_axes_of,
    prepare,
    run_batched,
)
from plait.kernels._linalg import mm, mt, mv
from plait.kernels._rts import backward_elements, draw, smooth

__all__ = ["kalman_filter", "kalman_sample", "kalman_smoother"]


def kalman_filter(
    init_mean: Float[ArrayLike, "*#batch state"],
    init_scale_tril: Float[ArrayLike, "*#batch state state"],
    transition: AffineGaussian,
    emission: AffineGaussian,
    observations: Float[ArrayLike, "*#batch time obs"],
    *,
    mask: Bool[ArrayLike, "*#batch time"] | None = None,
    strategy: KalmanStrategy = "auto",
) -> KalmanFilterResult:
    """The marginal log-likelihood and filtering distributions of a linear-Gaussian chain.

    ``log p(y) = Σ_t log N(y_t | H_t m_t⁻ + d_t, H_t P_t⁻ H_tᵀ + U_t U_tᵀ)`` over the
    observed steps, with ``(m_t⁻, P_t⁻)`` the predicted moments of ``x_{t+1}`` given
    ``y_{<t}`` (Kalman 1960). ``"sequential"`` runs a square-root filter: every
    covariance is carried as a triangular square root and updated by a QR
    decomposition (Kailath, Sayed & Hassibi 2000), so it stays positive semi-definite
    in float32 at any length; ``"associative"`` builds one element per step and
    combines them by ``lax.associative_scan`` (Särkkä & García-Fernández 2021).
    Float32 accuracy at ``T = 1e5`` (against a float64 filter, see the README):
    relative error ~1e-7 in the value and ~1e-5 in the gradient. Differentiable in
    every input. Masked observations may hold any value (NaN included): they are
    replaced by zeros and get a zero gradient.

    Args:
        init_mean: ``μ_0``, the mean of ``x_0``.
        init_scale_tril: ``L_0``, a square root of the covariance of ``x_0``.
        transition: ``AffineGaussian(F, c, S)``, time size ``T`` or 1.
        emission: ``AffineGaussian(H, d, U)``, time size ``T`` or 1.
        observations: ``y_t``, the observation of ``x_{t+1}``.
        mask: static-shape booleans, false where ``y_t`` is missing; None: all observed.
        strategy: ``"sequential"``, ``"associative"`` or ``"auto"`` (static).

    Returns:
        ``KalmanFilterResult(log_normalizer, filtered_means, filtered_covariances)``.

    Raises:
        ValueError: for inconsistent shapes or an unknown strategy.
        TypeError: for non-floating or mixed dtypes, or a non-boolean mask.

    Example:
        >>> import jax.numpy as jnp
        >>> from plait.kernels import AffineGaussian, kalman_filter
        >>> walk = AffineGaussian(jnp.ones((1, 1, 1)), jnp.zeros((1, 1)), jnp.ones((1, 1, 1)))
        >>> noisy = AffineGaussian(jnp.ones((1, 1, 1)), jnp.zeros((1, 1)), jnp.ones((1, 1, 1)))
        >>> y = jnp.array([[0.5], [1.0], [0.2]])
        >>> result = kalman_filter(jnp.zeros(1), jnp.eye(1), walk, noisy, y)
        >>> round(float(result.log_normalizer), 4)
        -4.4617
        >>> [round(float(m), 4) for m in result.filtered_means[:, 0]]  # E[x_t | y_0..y_{t-1}]
        [0.3333, 0.75, 0.4095]
    """
    chain, batch_shape, batched = prepare(
        init_mean, init_scale_tril, transition, emission, observations, mask
    )
    resolved = _resolve(strategy, chain)

    def one(c: Chain) -> KalmanFilterResult:
        if c.num_steps == 0:
            return _empty_filter(c)
        if resolved == "sequential":
            total, means, lowers = sequential_filter(c, keep=True)
            assert means is not None and lowers is not None
            return KalmanFilterResult(total, means, mm(lowers, mt(lowers)))
        total, means, roots = associative_filter(c)
        return KalmanFilterResult(total, means, mm(roots, mt(roots)))

    return cast(KalmanFilterResult, run_batched(one, chain, batched, batch_shape))


def kalman_smoother(
    init_mean: Float[ArrayLike, "*#batch state"],
    init_scale_tril: Float[ArrayLike, "*#batch state state"],
    transition: AffineGaussian,
    emission: AffineGaussian,
    observations: Float[ArrayLike, "*#batch time obs"],
    *,
    mask: Bool[ArrayLike, "*#batch time"] | None = None,
    strategy: KalmanStrategy = "auto",
) -> KalmanSmootherResult:
    """The posterior marginal of every state ``x_0..x_T`` given every observation (RTS).

    A filter (`kalman_filter`) and then the Rauch-Tung-Striebel backward pass
    ``m^s_t = m_t + E_t (m^s_{t+1} - m⁻_{t+1})``, ``P^s_t = P_t + E_t (P^s_{t+1} -
    P⁻_{t+1}) E_tᵀ`` with ``E_t = P_t F_tᵀ (P⁻_{t+1})⁻¹`` (Rauch, Tung & Striebel 1965),
    in square-root form. ``"associative"`` runs both passes with depth ``O(log T)``
    (Särkkä & García-Fernández 2021). The smoothed moments are also the gradient of
    ``log p(y)`` with respect to natural parameters, which the tests use as a check.

    Args:
        init_mean: ``μ_0``, the mean of ``x_0``.
        init_scale_tril: ``L_0``, a square root of the covariance of ``x_0``.
        transition: ``AffineGaussian(F, c, S)``, time size ``T`` or 1.
        emission: ``AffineGaussian(H, d, U)``, time size ``T`` or 1.
        observations: ``y_t``, the observation of ``x_{t+1}``.
        mask: false where ``y_t`` is missing; None: all observed.
        strategy: ``"sequential"``, ``"associative"`` or ``"auto"`` (static).

    Returns:
        ``KalmanSmootherResult(log_normalizer, initial_mean, initial_covariance,
        smoothed_means, smoothed_covariances)``.

    Raises:
        ValueError: for inconsistent shapes or an unknown strategy.
        TypeError: for non-floating or mixed dtypes, or a non-boolean mask.

    Example:
        >>> import jax.numpy as jnp
        >>> from plait.kernels import AffineGaussian, kalman_smoother
        >>> walk = AffineGaussian(jnp.ones((1, 1, 1)), jnp.zeros((1, 1)), jnp.ones((1, 1, 1)))
        >>> y = jnp.array([[0.5], [1.0], [0.2]])
        >>> post = kalman_smoother(jnp.zeros(1), jnp.eye(1), walk, walk, y)
        >>> [round(float(m), 4) for m in post.smoothed_means[:, 0]]  # E[x_t | y_0..y_2]
        [0.4476, 0.619, 0.4095]
    """
    chain, batch_shape, batched = prepare(
        init_mean, init_scale_tril, transition, emission, observations, mask
    )
    resolved = _resolve(strategy, chain)

    def one(c: Chain) -> KalmanSmootherResult:
        if c.num_steps == 0:
            return _empty_smoother(c)
        total, means, lowers = _filter_roots(c, resolved)
        smoothed_means, smoothed_lowers = smooth(backward_elements(c, means, lowers), resolved)
        covs = mm(smoothed_lowers, mt(smoothed_lowers))
        return KalmanSmootherResult(total, smoothed_means[0], covs[0], smoothed_means[1:], covs[1:])

    return cast(KalmanSmootherResult, run_batched(one, chain, batched, batch_shape))


def kalman_sample(
    key: PRNGKeyArray,
    init_mean: Float[ArrayLike, "*#batch state"],
    init_scale_tril: Float[ArrayLike, "*#batch state state"],
    transition: AffineGaussian,
    emission: AffineGaussian,
    observations: Float[ArrayLike, "*#batch time obs"],
    *,
    mask: Bool[ArrayLike, "*#batch time"] | None = None,
    strategy: KalmanStrategy = "auto",
) -> GaussianPath:
    """Draws one latent path ``x_0..x_T`` from its posterior (forward-filter backward-sample).

    Filtering forward, then ``x_T ~ N(m_T, P_T)`` and ``x_t | x_{t+1} ~ N(E_t x_{t+1}
    + g_t, P_t - E_t P⁻_{t+1} E_tᵀ)`` backwards (Carter & Kohn 1994;
    Frühwirth-Schnatter 1994). All the noise is drawn first, so the backward pass
    is a composition of affine maps: a reverse ``lax.scan`` or, for
    ``"associative"``, a reverse ``lax.associative_scan`` (depth ``O(log T)``). Both
    give the same path for the same key, up to rounding. The draw is a
    differentiable function of the inputs (reparameterised). For several draws,
    ``jax.vmap`` over keys.

    Args:
        key: a PRNG key (typed or raw).
        init_mean: ``μ_0``, the mean of ``x_0``.
        init_scale_tril: ``L_0``, a square root of the covariance of ``x_0``.
        transition: ``AffineGaussian(F, c, S)``, time size ``T`` or 1.
        emission: ``AffineGaussian(H, d, U)``, time size ``T`` or 1.
        observations: ``y_t``, the observation of ``x_{t+1}``.
        mask: false where ``y_t`` is missing; None: all observed.
        strategy: ``"sequential"``, ``"associative"`` or ``"auto"`` (static).

    Returns:
        ``GaussianPath(initial_state, states, log_normalizer)``.

    Raises:
        ValueError: for inconsistent shapes or an unknown strategy.
        TypeError: for non-floating or mixed dtypes, or a non-boolean mask.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from plait.kernels import AffineGaussian, kalman_sample
        >>> exact = AffineGaussian(jnp.ones((1, 1, 1)), jnp.zeros((1, 1)), jnp.zeros((1, 1, 1)))
        >>> walk = AffineGaussian(jnp.ones((1, 1, 1)), jnp.zeros((1, 1)), jnp.ones((1, 1, 1)))
        >>> y = jnp.array([[0.5], [1.0], [0.2]])  # observed without noise
        >>> path = kalman_sample(jax.random.key(0), jnp.zeros(1), jnp.eye(1), walk, exact, y)
        >>> [round(float(x), 4) for x in path.states[:, 0]]
        [0.5, 1.0, 0.2]
    """
    chain, batch_shape, batched = prepare(
        init_mean, init_scale_tril, transition, emission, observations, mask
    )
    resolved = _resolve(strategy, chain)
    size = math.prod(batch_shape)
    n = chain.init_mean.shape[-1]
    dtype = chain.init_mean.dtype
    noise = jax.random.normal(key, (size, chain.num_steps + 1, n), dtype)

    def one(c: Chain, eps: Array) -> GaussianPath:
        if c.num_steps == 0:
            x0 = c.init_mean + mv(c.init_scale, eps[0])
            return GaussianPath(x0, jnp.zeros((0, n), dtype), jnp.zeros((), dtype))
        total, means, lowers = _filter_roots(c, resolved)
        gain, g, z = backward_elements(c, means, lowers)
        path = draw(gain, g + mv(z, eps), resolved)
        return GaussianPath(path[0], path[1:], total)

    if not any(batched):
        return one(chain, noise[0])
    out = jax.vmap(one, in_axes=(in_axes_of(batched), 0))(chain, noise)
    return GaussianPath(*(a.reshape(batch_shape + a.shape[1:]) for a in out))


def _filter_roots(c: Chain, strategy: str) -> tuple[Array, Array, Array]:
    """``(log-likelihood, filtered means, filtered square roots)`` of one chain."""
    if strategy == "sequential":
        total, means, lowers = sequential_filter(c, keep=True)
        assert means is not None and lowers is not None
        return total, means, lowers
    return associative_filter(c)


def _empty_filter(c: Chain) -> KalmanFilterResult:
    n = c.init_mean.shape[-1]
    dtype = c.init_mean.dtype
    return KalmanFilterResult(
        jnp.zeros((), dtype), jnp.zeros((0, n), dtype), jnp.zeros((0, n, n), dtype)
    )


def _empty_smoother(c: Chain) -> KalmanSmootherResult:
    n = c.init_mean.shape[-1]
    dtype = c.init_mean.dtype
    return KalmanSmootherResult(
        jnp.zeros((), dtype),
        c.init_mean,
        mm(c.init_scale, mt(c.init_scale)),
        jnp.zeros((0, n), dtype),
        jnp.zeros((0, n, n), dtype),
    )


def _resolve(strategy: str, chain: Chain) -> str:
    if strategy == "auto":
        return auto_strategy(chain.num_steps, chain.init_mean.shape[-1], prefix=True)
    if strategy not in ("sequential", "associative"):
        raise ValueError(
            f'strategy must be "auto", "sequential" or "associative"; got {strategy!r}. '
            "A linear-Gaussian chain has no tree contraction: the associative scan gives "
            "the O(log T) depth."
        )
    return strategy
