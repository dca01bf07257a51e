"""The reference for the collapse tests: a linear-Gaussian chain written out densely.

Every latent ``x_0, ..., x_T`` is stacked into one multivariate normal (NumPy, float64),
the observations are an affine map of it plus independent noise, and the marginal
likelihood of the observed elements and the posterior of the latents are read off the
joint Gaussian directly (SciPy), with no recursion in time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pytest
from scipy import stats


class Dense(NamedTuple):
    """``log p(y_observed)``, and the posterior of the stacked latents ``(T + 1, n)``."""

    log_marginal: float
    mean: np.ndarray  # (T + 1, n)
    cov: np.ndarray  # ((T + 1) n, (T + 1) n)


def dense(
    m0: Any,
    p0: Any,
    f: Any,
    c: Any,
    q: Any,
    h: Any,
    d: Any,
    r: Any,
    y: Any,
    observed: Any = None,
) -> Dense:
    """The chain ``x_0 ~ N(m0, p0)``, ``x_t ~ N(f_t x_{t-1} + c_t, q_t)``,
    ``y_t ~ N(h_t x_t + d_t, r_t)`` for ``t = 1..T``, densely.

    ``f, q``: ``(T, n, n)``; ``c``: ``(T, n)``; ``h``: ``(T, k, n)``; ``d``: ``(T, k)``;
    ``r``: ``(T, k, k)``; ``y``: ``(T, k)``; ``observed``: ``(T, k)`` booleans (None: all).
    """
    m0, p0 = np.asarray(m0, np.float64), np.asarray(p0, np.float64)
    f, c, q = (np.asarray(a, np.float64) for a in (f, c, q))
    h, d, r, y = (np.asarray(a, np.float64) for a in (h, d, r, y))
    steps, n = c.shape
    k = d.shape[1]
    size = (steps + 1) * n
    # X = B (mean shocks): x_t = f_t x_{t-1} + c_t + e_t, written as M X = shocks.
    m = np.eye(size)
    for t in range(steps):
        m[(t + 1) * n : (t + 2) * n, t * n : (t + 1) * n] = -f[t]
    shock_mean = np.concatenate([m0, *c])
    shock_cov = np.zeros((size, size))
    shock_cov[:n, :n] = p0
    for t in range(steps):
        shock_cov[(t + 1) * n : (t + 2) * n, (t + 1) * n : (t + 2) * n] = q[t]
    inv = np.linalg.inv(m)
    x_mean = inv @ shock_mean
    x_cov = inv @ shock_cov @ inv.T
    big_h = np.zeros((steps * k, size))
    big_r = np.zeros((steps * k, steps * k))
    for t in range(steps):
        big_h[t * k : (t + 1) * k, (t + 1) * n : (t + 2) * n] = h[t]
        big_r[t * k : (t + 1) * k, t * k : (t + 1) * k] = r[t]
    keep = np.ones(steps * k, bool) if observed is None else np.reshape(observed, -1)
    big_h, big_r = big_h[keep], big_r[np.ix_(keep, keep)]
    y_obs = np.reshape(y, -1)[keep]
    y_mean = big_h @ x_mean + np.reshape(d, -1)[keep]
    y_cov = big_h @ x_cov @ big_h.T + big_r
    log_marginal = (
        float(stats.multivariate_normal(y_mean, y_cov).logpdf(y_obs)) if keep.any() else 0.0
    )
    gain = np.linalg.solve(y_cov, big_h @ x_cov).T
    post_mean = x_mean + gain @ (y_obs - y_mean)
    post_cov = x_cov - gain @ big_h @ x_cov
    return Dense(log_marginal, post_mean.reshape(steps + 1, n), post_cov)


@pytest.fixture
def dense_chain() -> Callable[..., Dense]:
    """`dense`, as a fixture (test modules import nothing from here)."""
    return dense
