"""The moves of the ensemble samplers: proposals built from the complementary half.

An ensemble step updates one half of the walkers (``active``, shape ``(n, D)``) using the
other half (``inactive``). :class:`AIES` moves propose points and a log correction
factor for the Metropolis-Hastings test; :class:`ESS` moves propose slice directions.
Each move is a small callable object (the keys of the ``moves={move: weight}`` dict).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import Array, random
from jax.scipy.stats import gaussian_kde

__all__ = [
    "DEMove",
    "DifferentialMove",
    "GaussianMove",
    "KDEMove",
    "RandomMove",
    "StretchMove",
    "nondiagonal_pairs",
]


def nondiagonal_pairs(n: int) -> Array:
    """Every ordered pair ``(i, j)``, ``i != j``, of ``n`` walkers, shaped ``(n(n-1), 2)``.

    Example:
        >>> nondiagonal_pairs(3).tolist()
        [[1, 0], [2, 0], [2, 1], [0, 1], [0, 2], [1, 2]]
    """
    rows, cols = np.tril_indices(n, -1)
    pairs = np.column_stack([np.concatenate([rows, cols]), np.concatenate([cols, rows])])
    return jnp.asarray(pairs)


def _pair_differences(rng_key: Array, inactive: Array, count: int) -> Array:
    """``inactive[j] - inactive[i]`` for ``count`` pairs drawn with replacement."""
    pairs = random.choice(rng_key, nondiagonal_pairs(inactive.shape[0]), shape=(count,))
    return inactive[pairs[:, 1]] - inactive[pairs[:, 0]]


@dataclass(frozen=True, eq=False)
class DEMove:
    """Differential evolution (Ter Braak 2006; Nelson et al. 2013), for :class:`AIES`:
    ``active + gamma (inactive[j] - inactive[i])`` with ``gamma ~ Normal(g0, g0 · sigma)``.

    Args:
        sigma: the relative spread of ``gamma``.
        g0: the mean of ``gamma`` (default ``2.38 / sqrt(2 D)``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> active, inactive = jnp.zeros((2, 3)), jnp.eye(3)[:2]
        >>> proposal, log_factor = DEMove()(jax.random.key(0), active, inactive)
        >>> proposal.shape, log_factor.tolist()
        ((2, 3), [0.0, 0.0])
    """

    sigma: float = 1.0e-5
    g0: float | None = None

    def __call__(self, rng_key: Array, active: Array, inactive: Array) -> tuple[Array, Array]:
        pairs_key, gamma_key = random.split(rng_key)
        n, d = active.shape
        g = 2.38 / np.sqrt(2.0 * d) if not self.g0 else self.g0
        diffs = _pair_differences(pairs_key, inactive, n)
        gamma = g + g * self.sigma * random.normal(gamma_key, (n, 1), active.dtype)
        return active + gamma * diffs, jnp.zeros(n, active.dtype)


@dataclass(frozen=True, eq=False)
class StretchMove:
    """Goodman & Weare's stretch move, for :class:`AIES`: towards or away from a random
    complementary walker by ``Z ~ g(z) ∝ 1/sqrt(z)`` on ``[1/a, a]``, with the factor
    ``(D - 1) log Z``.

    Args:
        a: the stretch scale.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> active, inactive = jnp.zeros((2, 3)), jnp.ones((2, 3))
        >>> proposal, log_factor = StretchMove()(jax.random.key(0), active, inactive)
        >>> bool(jnp.all(log_factor <= 2 * jnp.log(2.0)))
        True
    """

    a: float = 2.0

    def __call__(self, rng_key: Array, active: Array, inactive: Array) -> tuple[Array, Array]:
        n, d = active.shape
        unif_key, idx_key = random.split(rng_key)
        zz = ((self.a - 1.0) * random.uniform(unif_key, (n,), active.dtype) + 1) ** 2.0 / self.a
        factors = (d - 1.0) * jnp.log(zz)
        partners = inactive[random.randint(idx_key, (n,), 0, inactive.shape[0])]
        return partners - (partners - active) * zz[:, None], factors


@dataclass(frozen=True, eq=False)
class DifferentialMove:
    """Karamanis & Beutler's differential move, for :class:`ESS`: the direction
    ``2 μ (inactive[j] - inactive[i])`` of a random pair of complementary walkers.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> DifferentialMove()(jax.random.key(0), jnp.eye(3), 1.0).shape
        (3, 3)
    """

    def __call__(self, rng_key: Array, inactive: Array, mu: Any) -> Array:
        return jnp.asarray(2.0 * mu * _pair_differences(rng_key, inactive, inactive.shape[0]))


@dataclass(frozen=True, eq=False)
class GaussianMove:
    """Karamanis & Beutler's Gaussian move, for :class:`ESS`: directions
    ``2 μ v`` with ``v ~ N(0, cov(inactive))``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> inactive = jax.random.normal(jax.random.key(1), (6, 2))
        >>> GaussianMove()(jax.random.key(0), inactive, 1.0).shape
        (6, 2)
    """

    def __call__(self, rng_key: Array, inactive: Array, mu: Any) -> Array:
        n, d = inactive.shape
        cov = jnp.atleast_2d(jnp.cov(inactive, rowvar=False))
        eps = random.normal(rng_key, (n, d), inactive.dtype)
        return jnp.asarray(2.0 * mu * eps @ jnp.linalg.cholesky(cov).T)


@dataclass(frozen=True, eq=False)
class KDEMove:
    """Karamanis & Beutler's KDE move, for :class:`ESS`: the difference of two draws
    from a Gaussian kernel density estimate of the complementary walkers, times ``2 μ``.

    Args:
        bw_method: the bandwidth rule of ``jax.scipy.stats.gaussian_kde``.

    Example:
        >>> import jax
        >>> inactive = jax.random.normal(jax.random.key(1), (6, 2))
        >>> KDEMove()(jax.random.key(0), inactive, 1.0).shape
        (6, 2)
    """

    bw_method: Any = None

    def __call__(self, rng_key: Array, inactive: Array, mu: Any) -> Array:
        n = inactive.shape[0]
        kde = gaussian_kde(inactive.T, bw_method=self.bw_method)
        vectors = kde.resample(rng_key, (2 * n,)).T
        return jnp.asarray(2.0 * mu * (vectors[:n] - vectors[n:]))


@dataclass(frozen=True, eq=False)
class RandomMove:
    """Karamanis & Beutler's random move, for :class:`ESS`: random directions, no
    interaction between walkers (plain slice sampling; for debugging). As in NumPyro,
    the normal draws are normalised over the walkers.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> RandomMove()(jax.random.key(0), jnp.zeros((4, 2)), 0.5).shape
        (4, 2)
    """

    def __call__(self, rng_key: Array, inactive: Array, mu: Any) -> Array:
        directions = random.normal(rng_key, inactive.shape, inactive.dtype)
        directions = directions / jnp.linalg.norm(directions, axis=0)
        return jnp.asarray(2.0 * mu * directions)
