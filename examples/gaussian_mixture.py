"""A Gaussian mixture whose assignments are enumerated in a plate (plait.enum).

Each data point's component ``z_n`` is a discrete latent marked for parallel enumeration:
``plait.enum`` lays the K components on a dim left of the data plate and sums them out
exactly, so NUTS only sees the continuous weights, locations and scale. Afterwards
``infer_discrete`` recovers the assignments: their MAP (Viterbi-style, temperature 0) for
the posterior mean parameters, compared with the true labels.

Run: ``python examples/gaussian_mixture.py`` (``--n``, ``--k``, ``--warmup``,
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
from plait.enum import config_enumerate, infer_discrete
from plait.handlers import condition
from plait.infer import MCMC, NUTS, init_to_value


@config_enumerate
def mixture(y: Array, k: int) -> Array:
    """y_n ~ Normal(locs[z_n], scale), z_n ~ Categorical(weights), z_n enumerated."""
    weights = plait.sample("weights", dist.Dirichlet(jnp.ones(k)))
    locs = plait.sample("locs", dist.Normal(0.0, 10.0).expand([k]).to_event(1))
    scale = plait.sample("scale", dist.HalfNormal(2.0))
    with plait.plate("data", y.shape[0]):
        z = plait.sample("z", dist.Categorical(weights))
        plait.sample("y", dist.Normal(locs[z], scale), obs=y)
    return z


def make_data(key: Array, n: int, k: int) -> tuple[Array, Array, Array]:
    """n points from k well-separated unit-variance clusters; returns (y, labels, locs)."""
    locs = 4.0 * (jnp.arange(k) - (k - 1) / 2)
    kz, ky = jax.random.split(key)
    labels = jax.random.categorical(kz, jnp.zeros(k), shape=(n,))
    y = locs[labels] + jax.random.normal(ky, (n,))
    return y, labels, locs


def _fmt(values: Array) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values.tolist()) + "]"


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Fit the mixture, print the parameters and the accuracy of the MAP assignments.

    Returns: the largest error in the component locations and the share of points whose
    MAP component is their true one.
    """
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="data points")
    parser.add_argument("--k", type=int, default=3, help="components")
    parser.add_argument("--warmup", type=int, default=500, help="NUTS warm-up steps")
    parser.add_argument("--samples", type=int, default=500, help="NUTS draws")
    args = parser.parse_args(argv)

    y, labels, true_locs = make_data(jax.random.key(0), args.n, args.k)
    print(f"{args.n} points from {args.k} components at {true_locs.tolist()}")

    # Start the locations in increasing order, as the true ones are (no label switching).
    start = {"locs": jnp.linspace(-1.0, 1.0, args.k) * float(jnp.std(y))}
    nuts = NUTS(mixture, init_strategy=init_to_value(values=start))
    mcmc = MCMC(nuts, num_warmup=args.warmup, num_samples=args.samples, progress_bar=False)
    mcmc.run(jax.random.key(1), y, args.k)
    samples = mcmc.get_samples()
    assert "z" not in samples  # summed out, never sampled by NUTS
    means = {name: samples[name].mean(0) for name in ("weights", "locs", "scale")}
    print(f"posterior mean weights {_fmt(means['weights'])}")
    print(f"posterior mean locs    {_fmt(means['locs'])}")
    print(f"posterior mean scale   {float(means['scale']):.2f}")

    # The MAP assignment of every point given the posterior mean parameters.
    fitted = condition(mixture, data=means)
    z_map = infer_discrete(fitted, temperature=0)(y, args.k)
    accuracy = float(jnp.mean(z_map == labels))
    print(f"MAP assignments agree with the true labels for {100 * accuracy:.1f}% of points")

    return {
        "locs_error": float(jnp.max(jnp.abs(means["locs"] - true_locs))),
        "accuracy": accuracy,
    }


if __name__ == "__main__":
    main()
