"""A plated Bayesian linear regression, end to end with plait-core and plait-handlers.

Simulates data from the model itself, traces it, evaluates the jitted log density and
its gradient at the true parameters, and prints the trace as a table.

Run: ``hatch run demo:regression``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax import Array

import plait
from plait.handlers import condition, seed, substitute, trace


def regression(x: Array, y: Array | None = None) -> Array:
    """y_n ~ Normal(w . x_n + b, sigma), with a plate over the N data points."""
    w = plait.sample("w", dist.Normal(jnp.zeros(x.shape[1]), 1.0).to_event(1))
    b = plait.sample("b", dist.Normal(0.0, 1.0))
    sigma = plait.sample("sigma", dist.HalfNormal(1.0))
    mean = plait.deterministic("mean", x @ w + b)
    with plait.plate("data", x.shape[0]):
        return plait.sample("y", dist.Normal(mean, sigma), obs=y)


def log_joint(params: dict[str, Array], x: Array, y: Array) -> Array:
    """Sum of every sample site's log probability with ``params`` substituted."""
    tr = trace(substitute(regression, data=params)).get_trace(x, y)
    return sum(
        (jnp.sum(site.fn.log_prob(site.value)) for site in tr.values() if site.type == "sample"),
        start=jnp.zeros(()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--d", type=int, default=3)
    args = parser.parse_args()

    x = jax.random.normal(jax.random.key(0), (args.n, args.d))
    truth = {"w": jnp.arange(1.0, args.d + 1.0), "b": jnp.array(-0.5), "sigma": jnp.array(0.3)}
    simulated = trace(seed(condition(regression, data=truth), rng_seed=1)).get_trace(x)
    y = simulated["y"].value
    print(f"simulated {args.n} points from w={truth['w']}, b={truth['b']}, sigma={truth['sigma']}")

    tr = trace(seed(regression, rng_seed=2)).get_trace(x, y)
    print("\ntrace of the model with the data observed:")
    print(plait.format_shapes(tr))

    value_and_grad = jax.jit(jax.value_and_grad(log_joint))
    value, grad = value_and_grad(truth, x, y)
    print(f"\nlog p(y, w, b, sigma) at the truth: {float(value):.3f}")
    print("gradient:", {k: jnp.round(v, 3).tolist() for k, v in grad.items()})
    shifted = {**truth, "w": truth["w"] + 0.5}
    print(f"log p with w shifted by 0.5:     {float(value_and_grad(shifted, x, y)[0]):.3f}")
    print("\nplugins:", ", ".join(f"{p.name} {p.version}" for p in plait.plugins()))


if __name__ == "__main__":
    main()
