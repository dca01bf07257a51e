"""MCMC diagnostics in NumPy: effective sample size, split R-hat, HPDI, summary table.

The estimators are Stan's (Stan Reference Manual, "Effective sample size" and
"Potential scale reduction"): autocovariances by FFT, combined over chains, truncated by
Geyer's initial monotone sequence; R-hat on chains split in halves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "autocovariance",
    "effective_sample_size",
    "format_summary",
    "hpdi",
    "split_gelman_rubin",
    "summary",
]


def autocovariance(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """The biased autocovariance of ``x`` along ``axis`` at every lag (by FFT, float64).

    Example:
        >>> autocovariance(np.array([1.0, -1.0, 1.0, -1.0]))
        array([ 1.  , -0.75,  0.5 , -0.25])
    """
    x = np.swapaxes(np.asarray(x, dtype=np.float64), axis, -1)
    n = x.shape[-1]
    centered = x - x.mean(axis=-1, keepdims=True)
    spectrum = np.fft.rfft(centered, n=2 * n, axis=-1)
    acov = np.fft.irfft(spectrum * np.conjugate(spectrum), n=2 * n, axis=-1)[..., :n] / n
    return np.swapaxes(acov, axis, -1)


def _variances(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Within-chain variance and the pooled variance estimate (Stan's ``var+``)."""
    chains, n = x.shape[:2]
    within = x.var(axis=1, ddof=1).mean(axis=0)
    pooled = within * (n - 1) / n
    if chains > 1:
        pooled = pooled + x.mean(axis=1).var(axis=0, ddof=1)
    else:
        within = pooled
    return within, pooled


def effective_sample_size(x: Any) -> np.ndarray:
    """The effective sample size of draws ``x`` shaped ``(chain, draw, ...)``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> bool(3000 < effective_sample_size(rng.normal(size=(2, 2000))) < 5000)
        True
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2 or x.shape[1] < 2:
        raise ValueError(f"effective_sample_size needs (chain, draw>=2, ...) draws, got {x.shape}.")
    gamma = autocovariance(x, axis=1).mean(axis=0)
    within, pooled = _variances(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = 1.0 - (within - gamma) / pooled
    rho[0] = 1.0
    # Geyer: sums of adjacent pairs are positive and decreasing; truncate there.
    pairs = rho[:-1:2] + rho[1::2]
    tail = np.minimum.accumulate(np.clip(pairs[1:], 0.0, None), axis=0)
    tau = -1.0 + 2.0 * (pairs[0] + tail.sum(axis=0))
    return np.asarray(x.shape[0] * x.shape[1] / tau)


def split_gelman_rubin(x: Any) -> np.ndarray:
    """Split R-hat of draws ``x`` shaped ``(chain, draw>=4, ...)``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> bool(abs(split_gelman_rubin(rng.normal(size=(2, 1000))) - 1) < 0.01)
        True
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2 or x.shape[1] < 4:
        raise ValueError(f"split_gelman_rubin needs (chain, draw>=4, ...) draws, got {x.shape}.")
    half = x.shape[1] // 2
    split = np.concatenate([x[:, :half], x[:, -half:]], axis=0)
    within, pooled = _variances(split)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.sqrt(pooled / within))


def hpdi(x: Any, prob: float = 0.9, axis: int = 0) -> np.ndarray:
    """The narrowest interval holding ``prob`` of the draws along ``axis``: ``[low, high]``
    stacked on a new leading axis.

    Example:
        >>> hpdi(np.arange(11.0), 0.5)
        array([0., 5.])
    """
    x = np.sort(np.asarray(x), axis=axis)
    n = x.shape[axis]
    width = min(int(np.floor(prob * n)), n - 1)
    lows = np.take(x, np.arange(n - width), axis=axis)
    highs = np.take(x, np.arange(width, n), axis=axis)
    best = np.expand_dims(np.argmin(highs - lows, axis=axis), axis)
    low = np.take_along_axis(lows, best, axis=axis).squeeze(axis)
    high = np.take_along_axis(highs, best, axis=axis).squeeze(axis)
    return np.stack([low, high])


def summary(samples: Mapping[str, Any], prob: float = 0.9) -> dict[str, dict[str, np.ndarray]]:
    """Mean, std, median, HPDI bounds, ESS and split R-hat of each site's draws, shaped
    ``(chain, draw, ...)``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> stats = summary({"x": rng.normal(size=(2, 500))})
        >>> sorted(stats["x"])
        ['5.0%', '95.0%', 'mean', 'median', 'n_eff', 'r_hat', 'std']
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    low_name, high_name = f"{50 * (1 - prob):.1f}%", f"{50 * (1 + prob):.1f}%"
    for name, value in samples.items():
        x = np.asarray(value)
        flat = x.reshape((-1, *x.shape[2:]))
        low, high = hpdi(flat, prob)
        out[name] = {
            "mean": flat.mean(axis=0),
            "std": flat.std(axis=0),
            "median": np.median(flat, axis=0),
            low_name: low,
            high_name: high,
            "n_eff": effective_sample_size(x),
            "r_hat": split_gelman_rubin(x),
        }
    return out


def format_summary(samples: Mapping[str, Any], prob: float = 0.9) -> str:
    """The table :meth:`MCMC.print_summary` prints, one row per scalar component.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> print(format_summary({"x": rng.normal(size=(2, 500))}).splitlines()[0].split())
        ['mean', 'std', 'median', '5.0%', '95.0%', 'n_eff', 'r_hat']
    """
    stats = summary(samples, prob)
    columns = next(iter(stats.values())).keys() if stats else []
    rows: list[tuple[str, list[float]]] = []
    for name, site in stats.items():
        shape = np.shape(site["mean"])
        for index in np.ndindex(*shape):
            label = name + (f"[{','.join(map(str, index))}]" if index else "")
            rows.append((label, [float(np.asarray(site[c])[index]) for c in columns]))
    width = max([len(r[0]) for r in rows] + [4]) + 2
    header = " " * width + "".join(f"{c:>10}" for c in columns)
    lines = [header]
    for label, values in rows:
        lines.append(f"{label:>{width}}" + "".join(f"{v:>10.2f}" for v in values))
    return "\n".join(lines)
