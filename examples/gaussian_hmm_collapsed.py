"""The seed's Gaussian HMM with unknown noise scales: NUTS with x sampled, and with x collapsed.

    s, o ~ HalfNormal(1),   x_0 ~ Normal(0, 1),   x_t ~ Normal(x_{t-1}, s),   y_t ~ Normal(x_t, o)

written as one ``scan`` body. NumPyro's way samples the T latent states with the two
scales, so NUTS moves in T + 2 dimensions through a funnel-shaped posterior;
``plait.gaussian.collapse(model)`` integrates the states out exactly (a Kalman filter read
off the traced body), so NUTS moves in 2. The states come back afterwards:
``Predictive(collapse(model), samples)`` draws whole paths from their exact posterior
(forward-filter backward-sample), and ``plait.gaussian.smooth`` gives their posterior
means and variances for given scales.

Run: ``python examples/gaussian_hmm_collapsed.py`` (``--length``, ``--warmup``,
``--samples``, ``--out`` for a plot of the smoothed path and its band).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax import Array

import plait
from plait.control_flow import scan
from plait.gaussian import collapse, smooth
from plait.handlers import condition, seed, trace
from plait.infer import MCMC, NUTS, Predictive, summary

TRUTH = {"s": 0.3, "o": 0.5}


def gaussian_hmm(y: Array | None = None, length: int = 100) -> Array:
    """The seed's ``gaussian_hmm`` with unknown transition and observation scales."""
    s = plait.sample("s", dist.HalfNormal(1.0))
    o = plait.sample("o", dist.HalfNormal(1.0))

    def transition(x_prev: Array, y_t: Array | None) -> tuple[Array, Array]:
        x = plait.sample("x", dist.Normal(x_prev, s))
        plait.sample("y", dist.Normal(x, o), obs=y_t)
        return x, x

    x0 = plait.sample("x_0", dist.Normal(0.0, 1.0))
    _, xs = scan(transition, x0, y, length=length)
    return xs


def simulate(key: Array, length: int) -> tuple[Array, Array]:
    """A latent path and observations drawn from the model at the true scales."""
    truth = {k: jnp.asarray(v) for k, v in TRUTH.items()}
    tr = trace(seed(condition(gaussian_hmm, data=truth), rng_seed=key)).get_trace(length=length)
    return tr["x"].value, tr["y"].value


def fit(
    model: Callable[..., Any], y: Array, warmup: int, samples: int
) -> tuple[dict[str, Array], dict[str, dict[str, float]], float]:
    """NUTS on ``model``: the draws, a summary of the scales and the wall time (seconds)."""
    mcmc = MCMC(NUTS(model), num_warmup=warmup, num_samples=samples, progress_bar=False)
    start = time.perf_counter()
    mcmc.run(jax.random.key(1), y, length=y.shape[0])
    draws = jax.block_until_ready(mcmc.get_samples())
    wall = time.perf_counter() - start
    by_chain = mcmc.get_samples(group_by_chain=True)
    stats = summary({name: by_chain[name] for name in TRUTH})
    table = {name: {k: float(v) for k, v in row.items()} for name, row in stats.items()}
    for row in table.values():  # a chain stuck through a very short run has no ESS (NaN)
        row["n_eff"] = float(np.nan_to_num(row["n_eff"]))
    return draws, table, wall


def plot(path: str, y: Array, x_true: Array, mean: Array, lo: Array, hi: Array) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(1, y.shape[0] + 1)
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(t, y, ".", color="0.5", ms=3, label="data")
    ax.plot(t, x_true, color="k", lw=1.0, label="true x")
    ax.plot(t, mean, color="C0", lw=1.2, label="posterior mean of x (collapsed)")
    ax.fill_between(t, lo, hi, color="C0", alpha=0.25, label="90% band (FFBS draws)")
    ax.set_xlabel("t")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Simulate, fit both ways, bring the path back; print a summary.

    Returns: the posterior means of the scales and their smallest effective sample size per
    second under each fit, and the error of the posterior mean path.
    """
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--length", type=int, default=100, help="observed steps T")
    parser.add_argument("--warmup", type=int, default=500, help="NUTS warm-up steps")
    parser.add_argument("--samples", type=int, default=500, help="NUTS draws")
    parser.add_argument("--out", default=None, help="write a plot of the path here (PNG)")
    args = parser.parse_args(argv)

    x_true, y = simulate(jax.random.key(0), args.length)
    print(f"simulated {args.length} steps at {TRUTH}")

    result: dict[str, float] = {}
    fits = {"sampled": gaussian_hmm, "collapsed": collapse(gaussian_hmm)}
    draws: dict[str, Array] = {}
    print(f"\n{'fit':10} {'':3} {'truth':>6} {'mean':>6} {'sd':>6} {'n_eff':>7} {'ESS/s':>8}")
    for label, model in fits.items():
        draws, table, wall = fit(model, y, args.warmup, args.samples)
        for name, row in table.items():
            print(
                f"{label:10} {name:3} {TRUTH[name]:6.2f} {row['mean']:6.2f} {row['std']:6.2f} "
                f"{row['n_eff']:7.0f} {row['n_eff'] / wall:8.1f}"
            )
            result[f"{label}_{name}"] = row["mean"]
        result[f"{label}_ess_per_s"] = min(row["n_eff"] for row in table.values()) / wall
        print(f"{label:10} wall {wall:.1f}s (compilation included)")
    speedup = result["collapsed_ess_per_s"] / result["sampled_ess_per_s"]
    print(f"\ncollapsed / sampled, ESS/s of the slower scale: {speedup:.1f}x")

    # The path back, from the collapsed fit: exact posterior draws given each scale draw,
    # and the smoothed mean at the posterior mean of the scales.
    paths = Predictive(collapse(gaussian_hmm), draws, return_sites=["x"])(
        jax.random.key(2), y, length=args.length
    )["x"]
    lo, hi = jnp.percentile(paths, jnp.array([5.0, 95.0]), axis=0)
    at_mean = {name: draws[name].mean() for name in TRUTH}
    post = smooth(gaussian_hmm, (y,), {"length": args.length}, params=at_mean)["x"]
    rmse = float(jnp.sqrt(jnp.mean((paths.mean(0) - x_true) ** 2)))
    covered = float(jnp.mean((x_true >= lo) & (x_true <= hi)))
    print(f"posterior mean path vs the true path: RMSE {rmse:.3f}; 90% band covers {covered:.0%}")
    gap = float(jnp.max(jnp.abs(post.mean - paths.mean(0))))
    print(f"smoothed mean at the mean scales vs the mean of the FFBS draws: max gap {gap:.3f}")
    if args.out:
        plot(args.out, y, x_true, paths.mean(0), lo, hi)
        print(f"wrote {args.out}")
    result["path_rmse"] = rmse
    return result


if __name__ == "__main__":
    main()
