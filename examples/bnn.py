"""A Bayesian neural network for 1-d regression, with plait.nn.random_module.

The weights of a small stax MLP get a Normal prior (``random_module`` turns every leaf into
a ``sample`` site), the noise scale a HalfNormal one. NUTS draws from the posterior of all
the weights, then ``Predictive`` evaluates the network on a grid for every draw: the
predictive band is narrow where there are data and widens in the gap and outside.

Run: ``python examples/bnn.py`` (``--n``, ``--hidden``, ``--warmup``, ``--samples``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax import Array
from jax.example_libraries import stax

import plait
from plait.infer import MCMC, NUTS, Predictive
from plait.nn import random_module


def bnn(x: Array, y: Array | None = None, hidden: int = 16) -> Array:
    """y_n ~ Normal(f(x_n), sigma) with f an MLP whose weights are drawn from N(0, 1)."""
    net = random_module(
        "mlp",
        stax.serial(stax.Dense(hidden), stax.Tanh, stax.Dense(1)),  # type: ignore[no-untyped-call]
        dist.Normal(0.0, 1.0),
        input_shape=(-1, x.shape[-1]),
    )
    mean = plait.deterministic("mean", net(x)[..., 0])
    sigma = plait.sample("sigma", dist.HalfNormal(0.5))
    with plait.plate("data", x.shape[0]):
        return plait.sample("y", dist.Normal(mean, sigma), obs=y)


def make_data(key: Array, n: int) -> tuple[Array, Array]:
    """n points of y = sin(3 x) + noise, with x in two clusters (a gap between them)."""
    kx, ky = jax.random.split(key)
    x = jnp.concatenate(
        [
            jax.random.uniform(kx, (n - n // 2,), minval=-1.0, maxval=-0.2),
            jax.random.uniform(ky, (n // 2,), minval=0.4, maxval=1.0),
        ]
    )
    y = jnp.sin(3.0 * x) + 0.1 * jax.random.normal(jax.random.fold_in(key, 1), x.shape)
    return x[:, None], y


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Draw the BNN's posterior and print the predictive mean and spread on a grid.

    Returns: the noise scale's posterior mean and the predictive spread inside and outside
    the range of the data.
    """
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="number of data points")
    parser.add_argument("--hidden", type=int, default=16, help="hidden units")
    parser.add_argument("--warmup", type=int, default=500, help="NUTS warm-up steps")
    parser.add_argument("--samples", type=int, default=500, help="NUTS draws")
    args = parser.parse_args(argv)

    x, y = make_data(jax.random.key(0), args.n)
    mcmc = MCMC(NUTS(bnn), num_warmup=args.warmup, num_samples=args.samples, progress_bar=False)
    mcmc.run(jax.random.key(1), x, y, hidden=args.hidden)
    samples = mcmc.get_samples()
    weights = [name for name in samples if name.startswith("mlp/")]
    divergences = int(mcmc.get_extra_fields()["diverging"].sum())
    print(
        f"NUTS: {args.samples} draws of {len(weights)} weight sites and sigma; "
        f"sigma = {float(samples['sigma'].mean()):.3f}; {divergences} divergences"
    )

    # Draw the network's output on a grid for every posterior draw of the weights (the
    # deterministic "mean" of the training inputs is left out, so it is recomputed).
    grid = jnp.linspace(-1.5, 1.5, 13)[:, None]
    latent = {name: value for name, value in samples.items() if name != "mean"}
    predictive = Predictive(bnn, latent, return_sites=["mean"])
    draws = predictive(jax.random.key(2), grid, hidden=args.hidden)["mean"]
    mean, spread = draws.mean(0), draws.std(0)
    print("\n     x   truth   mean   sd")
    for xi, m, s in zip(grid[:, 0].tolist(), mean.tolist(), spread.tolist(), strict=True):
        print(f"{xi:6.2f}  {jnp.sin(3.0 * xi):6.2f}  {m:5.2f}  {s:5.2f}")

    inside = (grid[:, 0] > -1.0) & (grid[:, 0] < 1.0)
    summary = {
        "sigma": float(samples["sigma"].mean()),
        "sd_inside": float(spread[inside].mean()),
        "sd_outside": float(spread[~inside].mean()),
    }
    print(
        f"\nmean predictive sd inside the data range {summary['sd_inside']:.2f}, "
        f"outside {summary['sd_outside']:.2f}"
    )
    return summary


if __name__ == "__main__":
    main()
