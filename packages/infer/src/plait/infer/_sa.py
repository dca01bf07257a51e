"""Sample Adaptive MCMC (Zhu 2019): the maths, as pure functions of one chain.

The state holds ``N`` points ``zs`` (``adapt_state_size``) and a Gaussian fitted to them
(mean ``loc``, Cholesky factor or standard deviations ``scale``). A step draws one new
point ``z ~ N(loc, scale)``, so that there are ``N + 1`` candidates, and removes one of
them, ``j``, with probability proportional to

    w_j = N(z_j; loc_{-j}, scale_{-j}) / π(z_j),

where ``loc_{-j}``, ``scale_{-j}`` are the moments of the ``N`` points left when ``z_j``
is removed (``w_{N+1}`` uses the current moments). The leave-one-out moments are rank-one
updates of the current ones (reference [1], Appendix 6). As in NumPyro, the chain reports
one of the ``N`` points drawn uniformly, not all of them.

[1] M. Zhu, *Sample Adaptive MCMC*, NeurIPS 2019.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import Array, lax, random
from jax.flatten_util import ravel_pytree
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import logsumexp

from plait.infer._init import InitStrategy, init_to_uniform
from plait.infer._on_model import ModelKernel

__all__ = [
    "SA",
    "SAAdaptState",
    "SAState",
    "cholesky_update",
    "leave_one_out_moments",
    "sa_init",
    "sa_sample",
]

MAX_DELTA_ENERGY = 1000.0


class SAAdaptState(NamedTuple):
    """The ``N`` points of a :class:`SA` chain and the Gaussian fitted to them.

    Fields:
        zs: the points, flattened, ``(N, D)``.
        pes: their potential energies, ``(N,)``.
        loc: their mean, ``(D,)``.
        inv_mass_matrix_sqrt: the Cholesky factor of their covariance ``(D, D)`` (dense)
            or their standard deviations ``(D,)`` (diagonal).
    """

    zs: Array
    pes: Array
    loc: Array
    inv_mass_matrix_sqrt: Array


class SAState(NamedTuple):
    """The state of a :class:`SA` chain (NumPyro's fields).

    Fields:
        i: the iteration.
        z: the reported point (unconstrained latent values).
        potential_energy: the potential energy at ``z``.
        accept_prob: the probability that the last new point was kept.
        mean_accept_prob: the running mean of ``accept_prob``.
        diverging: whether the new point's potential energy exceeded the current one's
            by more than 1000.
        adapt_state: the points and their Gaussian (:class:`SAAdaptState`).
        rng_key: the key of the next step.
    """

    i: Array
    z: Any
    potential_energy: Array
    accept_prob: Array
    mean_accept_prob: Array
    diverging: Array
    adapt_state: SAAdaptState
    rng_key: Array


def _sample_proposal(scale: Array, rng_key: Array, batch_shape: tuple[int, ...] = ()) -> Array:
    eps = random.normal(rng_key, batch_shape + jnp.shape(scale)[:1])
    if scale.ndim == 1:
        return scale * eps
    return jnp.matmul(scale, eps[..., None])[..., 0]


def _fit(zs: Array, fallback: Array) -> Array:
    """The scale of the points: Cholesky factor of their (biased) covariance, or, when
    that fails (fewer points than dimensions), ``fallback``; diagonal: their std."""
    if fallback.ndim == 1:
        return jnp.std(zs, 0)
    cov = jnp.atleast_2d(jnp.cov(zs, rowvar=False, bias=True))
    cholesky = jnp.linalg.cholesky(cov)
    return jnp.where(jnp.any(jnp.isnan(cholesky)), fallback, cholesky)


def cholesky_update(lower: Array, x: Array, coef: Array | float = 1.0) -> Array:
    """The Cholesky factor of ``L Lᵀ + coef · x xᵀ`` (batched over leading dims).

    Krause & Igel's rank-one update (Algorithm 3.1) on ``L = L̃ diag(d)^{1/2}`` with unit
    diagonal ``L̃``: for each column ``j``, ``gamma = b d_j + coef w_j²``, ``d_j ← gamma / b``,
    ``b ← gamma / d_j`` (the old ``d_j``), and ``w``, ``L̃_j`` updated below the diagonal.
    NumPyro 0.22's ``cholesky_update`` divides by the *new* ``d_j`` there, which leaves
    ``b = 1`` and gives a wrong factor once ``x`` is not small (its SA with
    ``dense_mass=True`` uses it).

    Example:
        >>> import jax.numpy as jnp
        >>> out = cholesky_update(jnp.eye(2), jnp.array([1.0, 1.0]), 1.0)
        >>> bool(jnp.allclose(out @ out.T, jnp.eye(2) + 1.0))
        True
    """
    batch_shape = lax.broadcast_shapes(lower.shape[:-2], x.shape[:-1])
    lower = jnp.broadcast_to(lower, batch_shape + lower.shape[-2:])
    x = jnp.broadcast_to(x, batch_shape + x.shape[-1:])
    diag = jnp.diagonal(lower, axis1=-2, axis2=-1)
    unit = lower / diag[..., None, :]
    d = jnp.square(diag)

    def column(carry: tuple[Array, Array], val: tuple[Array, Array, Array]) -> Any:
        b, w = carry
        j, d_j, unit_j = val
        w_j = w[..., j]
        gamma = b * d_j + coef * jnp.square(w_j)
        w = w - w_j[..., None] * unit_j
        unit_j = unit_j + (coef * w_j / gamma)[..., None] * w
        return (gamma / d_j, w), (gamma / b, unit_j)

    d, unit = jnp.moveaxis(d, -1, 0), jnp.moveaxis(unit, -1, 0)
    init = (jnp.ones(batch_shape, x.dtype), x)
    _, (d, unit) = lax.scan(column, init, (jnp.arange(d.shape[0]), d, unit))
    d, unit = jnp.moveaxis(d, 0, -1), jnp.moveaxis(unit, 0, -1)
    return unit * jnp.sqrt(d)[..., None, :]


def leave_one_out_moments(zs: Array, loc: Array, scale: Array, new: Array) -> tuple[Array, Array]:
    """The mean and scale of the points ``zs`` with ``new`` added and each ``zs[n]``
    removed in turn (rank-one updates in NumPyro's numerically stable order).

    Args:
        zs: the ``N`` current points, ``(N, D)``.
        loc: their mean.
        scale: the Cholesky factor of their (biased) covariance, or their std.
        new: the new point.

    Returns:
        ``(locs, scales)`` with a leading axis of ``N``.

    Example:
        >>> import jax.numpy as jnp
        >>> zs = jnp.array([[0.0], [2.0]])
        >>> locs, scales = leave_one_out_moments(zs, zs.mean(0), zs.std(0), jnp.array([4.0]))
        >>> locs[:, 0], scales[:, 0]  # {2, 4} and {0, 4}
        (Array([3., 2.], dtype=float32), Array([1., 2.], dtype=float32))
    """
    weight = 1 / zs.shape[0]
    if scale.ndim > loc.ndim:
        new_scale = cholesky_update(scale, new - loc, weight)
        proposal_scale = cholesky_update(new_scale, zs - loc, -weight)
        proposal_scale = cholesky_update(proposal_scale, new - zs, -(weight**2))
    else:
        var = jnp.square(scale) + weight * jnp.square(new - loc)
        proposal_var = var - weight * jnp.square(zs - loc)
        proposal_var = proposal_var - weight**2 * jnp.square(new - zs)
        proposal_scale = jnp.sqrt(proposal_var)
    return loc + weight * (new - zs), proposal_scale


def _gaussian_log_prob(x: Array, loc: Array, scale: Array) -> Array:
    """``log N(x; loc, scale scaleᵀ)`` row by row (``scale`` lower triangular, or a std).

    Written out rather than with ``numpyro.distributions`` so that a leave-one-out factor
    that is not positive definite (a NaN weight, dropped below) raises nothing."""
    d = x.shape[-1]
    if scale.ndim == x.ndim:
        white = (x - loc) / scale
        log_det = jnp.sum(jnp.log(scale), -1)
    else:
        white = solve_triangular(scale, (x - loc)[..., None], lower=True)[..., 0]
        log_det = jnp.sum(jnp.log(jnp.diagonal(scale, axis1=-2, axis2=-1)), -1)
    return -0.5 * jnp.sum(white**2, -1) - log_det - 0.5 * d * jnp.log(2 * jnp.pi)


def _delete(x: Array, idx: Array) -> Array:
    """``x`` without row ``idx``."""
    mask = jnp.arange(x.shape[0] - 1) < idx
    return jnp.where(mask.reshape((-1,) + (1,) * (x.ndim - 1)), x[:-1], x[1:])


def sa_init(
    rng_key: Array,
    z: Any,
    potential_fn: Callable[[Any], Array],
    *,
    adapt_state_size: int | None = None,
    dense_mass: bool = True,
    inverse_mass_matrix: Array | None = None,
) -> SAState:
    """The first state of an SA chain around ``z``: ``N`` points drawn from a Gaussian
    centred at ``z`` (identity covariance unless ``inverse_mass_matrix`` is given).

    Args:
        rng_key: the key.
        z: the unconstrained starting point (a pytree).
        potential_fn: minus the log density of a point.
        adapt_state_size: ``N``, the number of points (default ``2 * D``; at least 2).
        dense_mass: fit a dense Gaussian (a diagonal one otherwise).
        inverse_mass_matrix: the covariance of the initial points.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> state = sa_init(jax.random.key(0), jnp.zeros(3), lambda z: 0.5 * jnp.sum(z**2))
        >>> state.adapt_state.zs.shape, state.adapt_state.inv_mass_matrix_sqrt.shape
        ((6, 3), (3, 3))
    """
    key_sa, key_zs, key_z = random.split(rng_key, 3)
    z_flat, unravel = ravel_pytree(z)
    size = z_flat.shape[-1]
    if inverse_mass_matrix is None:
        inverse_mass_matrix = jnp.identity(size) if dense_mass else jnp.ones(size)
    scale = (
        jnp.linalg.cholesky(inverse_mass_matrix) if dense_mass else jnp.sqrt(inverse_mass_matrix)
    )
    if adapt_state_size is None:
        adapt_state_size = 2 * size
    elif adapt_state_size < 2:
        raise AssertionError(f"adapt_state_size should be greater than 1; got {adapt_state_size}.")
    zs = z_flat + _sample_proposal(scale, key_zs, (adapt_state_size,))
    pes = lax.map(lambda x: potential_fn(unravel(x)), zs)
    scale = _fit(zs, scale)
    k = random.categorical(key_z, jnp.zeros(zs.shape[0]))
    zero = jnp.zeros((), z_flat.dtype)
    return SAState(
        jnp.array(0),
        unravel(zs[k]),
        pes[k],
        zero,
        zero,
        jnp.array(False),
        SAAdaptState(zs, pes, jnp.mean(zs, 0), scale),
        key_sa,
    )


def sa_sample(state: SAState, potential_fn: Callable[[Any], Array], num_warmup: int) -> SAState:
    """One SA step (NumPyro's ``sample_kernel``).

    Args:
        state: the current state.
        potential_fn: minus the log density of a point.
        num_warmup: the number of warm-up steps (for ``mean_accept_prob``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> pe = lambda z: 0.5 * jnp.sum(z**2)
        >>> state = sa_sample(sa_init(jax.random.key(0), jnp.zeros(2), pe), pe, 10)
        >>> int(state.i), state.adapt_state.zs.shape
        (1, (4, 2))
    """
    zs, pes, _, scale = state.adapt_state
    # Refit the moments each step rather than carrying the rank-one updates (precision).
    loc = jnp.mean(zs, 0)
    scale = _fit(zs, scale)
    rng_key, key_z, key_reject, key_pick = random.split(state.rng_key, 4)
    _, unravel = ravel_pytree(state.z)

    z = loc + _sample_proposal(scale, key_z)
    pe = potential_fn(unravel(z))
    pe = jnp.where(jnp.isnan(pe), jnp.inf, pe)
    diverging = (pe - state.potential_energy) > MAX_DELTA_ENERGY

    locs, scales = leave_one_out_moments(zs, loc, scale, z)
    zs_ = jnp.concatenate([zs, z[None, :]])
    pes_ = jnp.concatenate([pes, pe[None]])
    locs_ = jnp.concatenate([locs, loc[None, :]])
    scales_ = jnp.concatenate([scales, scale[None, ...]])
    log_weights = _gaussian_log_prob(zs_, locs_, scales_) + pes_
    log_weights = jnp.where(jnp.isfinite(log_weights), log_weights, -jnp.inf)
    j = random.categorical(key_reject, log_weights)
    adapt_state = SAAdaptState(_delete(zs_, j), _delete(pes_, j), locs_[j], scales_[j])

    # The new point is kept unless it is the one removed.
    accept_prob = 1 - jnp.exp(log_weights[-1] - logsumexp(log_weights))
    itr = state.i + 1
    n = jnp.where(state.i < num_warmup, itr, itr - num_warmup)
    mean_accept_prob = state.mean_accept_prob + (accept_prob - state.mean_accept_prob) / n

    k = random.categorical(key_pick, jnp.zeros(adapt_state.zs.shape[0]))
    return SAState(
        itr,
        unravel(adapt_state.zs[k]),
        adapt_state.pes[k],
        accept_prob.astype(state.accept_prob.dtype),
        mean_accept_prob.astype(state.mean_accept_prob.dtype),
        diverging,
        adapt_state,
        rng_key,
    )


class SA(ModelKernel[SAState]):
    """Sample Adaptive MCMC (Zhu 2019): gradient-free, one potential evaluation per
    step, adapting a Gaussian proposal to a population of points (NumPyro's ``SA``).

    Very fast per step but needs many warm-up steps. As in NumPyro, each draw is one of
    the population's points picked at random, not the whole population.

    Args:
        model: the model (or give ``potential_fn``).
        potential_fn: minus the log density of unconstrained parameters (then
            ``MCMC.run`` needs ``init_params``).
        adapt_state_size: the number of points (default: twice the latent dimension).
        dense_mass: a dense proposal covariance (diagonal otherwise).
        init_strategy: where chains start (:func:`plait.infer.init_to_uniform`, ...).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import MCMC, SA
        >>> def model():
        ...     sample("x", dist.Normal(1.0, 0.5))
        >>> mcmc = MCMC(SA(model), num_warmup=2000, num_samples=4000, progress_bar=False)
        >>> mcmc.run(jax.random.key(0))
        >>> bool(abs(mcmc.get_samples()["x"].mean() - 1.0) < 0.1)
        True
    """

    def __init__(
        self,
        model: Callable[..., Any] | None = None,
        potential_fn: Callable[[Any], Array] | None = None,
        adapt_state_size: int | None = None,
        dense_mass: bool = True,
        init_strategy: InitStrategy = init_to_uniform,
    ) -> None:
        super().__init__(model, potential_fn, init_strategy)
        if adapt_state_size is not None and adapt_state_size < 2:
            raise AssertionError(
                f"adapt_state_size should be greater than 1; got {adapt_state_size}."
            )
        self._adapt_state_size = adapt_state_size
        self._dense_mass = dense_mass
        self._num_warmup = 0

    @property
    def default_fields(self) -> tuple[str, ...]:
        return ("z", "diverging")

    def init(
        self,
        rng_key: Array,
        num_warmup: int,
        init_params: Any,
        model_args: tuple[Any, ...],
        model_kwargs: dict[str, Any],
    ) -> SAState:
        self._num_warmup = num_warmup
        rng_key, key_init = random.split(rng_key)
        info = self.initial_params(
            key_init, init_params, model_args, model_kwargs, validate_grad=False
        )
        return sa_init(
            rng_key,
            info.z,
            self.get_potential_fn(model_args, model_kwargs),
            adapt_state_size=self._adapt_state_size,
            dense_mass=self._dense_mass,
        )

    def check_init(
        self, state: SAState, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> SAState:
        # A chain runs if any of its points has a finite potential (the others weigh 0).
        def valid(s: SAState) -> np.ndarray:
            return np.asarray(np.isfinite(np.asarray(s.adapt_state.pes)).any(-1).reshape(-1))

        state = self.restart_invalid(
            state, valid(state), model_args, model_kwargs, validate_grad=False
        )
        if not valid(state).all():
            raise ValueError(
                "SA drew its initial points around a valid start, but every point of a chain "
                "has a non-finite potential (the support is narrow around the start). Start "
                "elsewhere with init_params, or use another kernel."
            )
        return state

    def sample(
        self, state: SAState, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> SAState:
        return sa_sample(state, self.get_potential_fn(model_args, model_kwargs), self._num_warmup)

    def get_diagnostics_str(self, state: SAState) -> str:
        return f"acc. prob={float(state.mean_accept_prob):.2f}"
