"""A state-space model with plait.control_flow.scan: fit by NUTS, then forecast.

An AR(1) latent state observed with noise,

    x_0 ~ Normal(0, 1),   x_t ~ Normal(phi x_{t-1}, sigma_x),   y_t ~ Normal(x_t, sigma_y),

is written as one ``scan`` body, so the model compiles once whatever the length. Data are
simulated from the model itself (``condition`` on the true parameters), NUTS draws the
parameters and the whole latent path, and ``Predictive`` forecasts: the loop is run for
``T + horizon`` steps with the posterior path (``T`` steps) substituted, so ``scan`` draws
the remaining ``horizon`` steps from the model.

Run: ``python examples/state_space.py`` (``--length``, ``--horizon``, ``--warmup``,
``--samples``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax import Array

import plait
from plait.control_flow import scan
from plait.handlers import condition, seed, trace
from plait.infer import MCMC, NUTS, Predictive, summary

TRUTH = {"phi": 0.8, "sigma_x": 0.5, "sigma_y": 0.3}


def ar1_model(length: int, y: Array | None = None) -> Array:
    """The AR(1) state-space model over ``length`` steps; ``y`` may be shorter."""
    phi = plait.sample("phi", dist.Uniform(-1.0, 1.0))
    sigma_x = plait.sample("sigma_x", dist.HalfNormal(1.0))
    sigma_y = plait.sample("sigma_y", dist.HalfNormal(1.0))
    x0 = plait.sample("x0", dist.Normal(0.0, 1.0))

    def step(x_prev: Array, y_t: Array | None) -> tuple[Array, Array]:
        x = plait.sample("x", dist.Normal(phi * x_prev, sigma_x))
        return x, plait.sample("y", dist.Normal(x, sigma_y), obs=y_t)

    _, ys = scan(step, x0, y, length=length)
    return ys


def simulate(key: Array, length: int) -> tuple[Array, Array]:
    """A latent path and observations drawn from the model at the true parameters."""
    truth = {k: jnp.asarray(v) for k, v in TRUTH.items()}
    tr = trace(seed(condition(ar1_model, data=truth), rng_seed=key)).get_trace(length)
    return tr["x"].value, tr["y"].value


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Simulate, fit and forecast; print a summary.

    Returns: posterior means of the parameters, the latent path's error, and the width of
    the forecast band at the first and last forecast step.
    """
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--length", type=int, default=100, help="observed steps T")
    parser.add_argument("--horizon", type=int, default=10, help="forecast steps")
    parser.add_argument("--warmup", type=int, default=500, help="NUTS warm-up steps")
    parser.add_argument("--samples", type=int, default=500, help="NUTS draws")
    args = parser.parse_args(argv)

    x_true, y = simulate(jax.random.key(0), args.length)
    print(f"simulated {args.length} steps at {TRUTH}")

    mcmc = MCMC(
        NUTS(ar1_model), num_warmup=args.warmup, num_samples=args.samples, progress_bar=False
    )
    mcmc.run(jax.random.key(1), args.length, y)
    samples = mcmc.get_samples()
    by_chain = mcmc.get_samples(group_by_chain=True)
    stats = summary({name: by_chain[name] for name in TRUTH})
    print(f"\n{'':8} {'truth':>6} {'mean':>6} {'sd':>6} {'n_eff':>6} {'r_hat':>6}")
    for name, row in stats.items():
        print(
            f"{name:8} {TRUTH[name]:6.2f} {float(row['mean']):6.2f} {float(row['std']):6.2f} "
            f"{float(row['n_eff']):6.0f} {float(row['r_hat']):6.2f}"
        )
    divergences = int(mcmc.get_extra_fields()["diverging"].sum())
    print(f"divergent transitions: {divergences}")

    x_mean = samples["x"].mean(0)
    path_rmse = float(jnp.sqrt(jnp.mean((x_mean - x_true) ** 2)))
    print(f"\nposterior mean path vs the true path: RMSE {path_rmse:.3f}")

    # Forecast: the posterior path covers the first T steps; scan draws the rest.
    total = args.length + args.horizon
    forecast = Predictive(ar1_model, samples, return_sites=["y"])(jax.random.key(2), total)["y"]
    future = forecast[:, args.length :]
    lo, hi = jnp.percentile(future, jnp.array([5.0, 95.0]), axis=0)
    print("\nforecast (90% band):")
    for h in range(args.horizon):
        print(f"  t={args.length + h:4d}  [{float(lo[h]):6.2f}, {float(hi[h]):6.2f}]")

    result = {name: float(samples[name].mean()) for name in TRUTH}
    result["path_rmse"] = path_rmse
    result["band_first"] = float(hi[0] - lo[0])
    result["band_last"] = float(hi[-1] - lo[-1])
    return result


if __name__ == "__main__":
    main()
