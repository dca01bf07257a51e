"""A 3-state hidden Markov model: NUTS with the hidden state summed out, then the path.

Simulates ``T`` observations from an HMM with sticky transitions and Gaussian emissions,
fits the transition matrix, the emission locations and the noise scale with NUTS while the
discrete state is enumerated out of the ``scan`` (plait-enum's time-parallel contraction),
prints the posterior summary, recovers the most probable state path (``infer_discrete``
at temperature 0) and writes a plot of the data, the true and the inferred states.

Without plait-enum or plait-control-flow the model falls back to one ``factor`` holding
the forward algorithm (``plait.kernels.chain_logsumexp``) and the path comes from Viterbi
(``plait.kernels.chain_mode``).

Run: ``hatch run demo:hmm`` (or ``python examples/hmm.py --out hmm.png``).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax import Array

import plait
from plait.handlers import seed, substitute, trace
from plait.infer import MCMC, NUTS, init_to_median
from plait.kernels import chain_logsumexp, chain_mode

K = 3
TRUE_TRANSITION = jnp.array([[0.95, 0.03, 0.02], [0.04, 0.92, 0.04], [0.02, 0.03, 0.95]])
TRUE_LOCS = jnp.array([-2.0, 0.0, 2.5])
TRUE_SCALE = 0.7
HAVE_ENUM = all(
    importlib.util.find_spec(name) is not None for name in ("plait.enum", "plait.control_flow")
)


def parameters() -> tuple[Array, Array, Array]:
    """The priors: sticky rows of the transition matrix, ordered locations, a scale."""
    transition = plait.sample(
        "transition", dist.Dirichlet(jnp.ones((K, K)) + 8.0 * jnp.eye(K)).to_event(1)
    )
    first = plait.sample("loc_first", dist.Normal(-2.0, 2.0))
    gaps = plait.sample("loc_gaps", dist.HalfNormal(3.0).expand([K - 1]).to_event(1))
    locs = plait.deterministic("locs", first + jnp.concatenate([jnp.zeros(1), jnp.cumsum(gaps)]))
    scale = plait.sample("scale", dist.HalfNormal(2.0))
    return transition, locs, scale


def hmm_enumerated(y: Array) -> None:
    """The state ``z_t`` is a ``scan`` body site marked for enumeration (plait-enum)."""
    from plait.control_flow import scan

    transition, locs, scale = parameters()

    def step(z_prev: Array, y_t: Array) -> tuple[Array, None]:
        z = plait.sample("z", dist.Categorical(transition[z_prev]), infer={"enumerate": "parallel"})
        plait.sample("y", dist.Normal(locs[z], scale), obs=y_t)
        return z, None

    scan(step, jnp.array(0), y)


def chain_log_factors(
    y: Array, transition: Array, locs: Array, scale: Array
) -> tuple[Array, Array]:
    """``init[z_1]`` and ``steps[t, z_t, z_{t+1}]`` of the chain, for plait.kernels."""
    emission = dist.Normal(locs, scale).log_prob(y[:, None])  # (T, K)
    log_transition = jnp.log(transition)
    init = log_transition[0] + emission[0]
    steps = log_transition[None] + emission[1:, None, :]
    return init, steps


def hmm_forward(y: Array) -> None:
    """Fallback: the state summed out by the forward algorithm in one ``factor``."""
    transition, locs, scale = parameters()
    init, steps = chain_log_factors(y, transition, locs, scale)
    plait.factor("y", chain_logsumexp(init, steps).log_normalizer)


def simulate(key: Array, num_steps: int) -> tuple[Array, Array]:
    """States (starting after state 0) and observations of the true HMM."""

    def step(z: Array, k: Array) -> tuple[Array, tuple[Array, Array]]:
        k1, k2 = jax.random.split(k)
        z = jax.random.categorical(k1, jnp.log(TRUE_TRANSITION[z]))
        y = TRUE_LOCS[z] + TRUE_SCALE * jax.random.normal(k2)
        return z, (z, y)

    _, (states, y) = jax.lax.scan(step, jnp.array(0), jax.random.split(key, num_steps))
    return states, y


def decode(model: Callable[..., Any], params: dict[str, Array], y: Array) -> Array:
    """The most probable state path given ``params``: infer_discrete or Viterbi."""
    if model is hmm_enumerated:
        from plait.enum import infer_discrete

        conditioned = infer_discrete(substitute(model, data=params), temperature=0)
        return trace(seed(conditioned, 0)).get_trace(y)["z"].value  # type: ignore[no-any-return]
    init, steps = chain_log_factors(y, params["transition"], params["locs"], params["scale"])
    path = chain_mode(init, steps)
    return jnp.concatenate([path.initial_state[None], path.states])


def plot(path: str, y: Array, states: Array, inferred: Array, locs: Array) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(y.shape[0])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    top.plot(t, y, lw=0.6, color="0.5", label="data")
    top.plot(t, np.asarray(locs)[np.asarray(inferred)], lw=1.2, color="C3", label="inferred mean")
    top.set_ylabel("y")
    top.legend(loc="upper right")
    bottom.step(t, states, where="mid", lw=1.5, label="true state")
    bottom.step(t, inferred, where="mid", lw=1.0, ls="--", label="inferred state")
    bottom.set_yticks(range(K))
    bottom.set_xlabel("time")
    bottom.set_ylabel("state")
    bottom.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-steps", type=int, default=1000, help="length T of the series")
    parser.add_argument("--num-warmup", type=int, default=300)
    parser.add_argument("--num-samples", type=int, default=300)
    parser.add_argument("--num-chains", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="hmm.png", help="where to write the plot (PNG)")
    parser.add_argument(
        "--forward", action="store_true", help="use the forward-algorithm factor, not plait-enum"
    )
    args = parser.parse_args(argv)

    states, y = simulate(jax.random.key(args.seed), args.num_steps)
    model = hmm_forward if args.forward or not HAVE_ENUM else hmm_enumerated
    print(f"model: {model.__name__} (T = {args.num_steps}, {K} states)")

    start = time.perf_counter()
    mcmc = MCMC(
        NUTS(model, init_strategy=init_to_median),
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(args.seed + 1), y)
    print(f"NUTS: {time.perf_counter() - start:.1f} s")
    mcmc.print_summary()

    samples = mcmc.get_samples()
    # The posterior mean (the mean of simplex rows is a simplex; medians are not).
    posterior_mean = {k: jnp.mean(v, axis=0) for k, v in samples.items()}
    inferred = decode(model, posterior_mean, y)
    accuracy = float(jnp.mean(inferred == states))
    locs = np.asarray(posterior_mean["locs"]).round(2)
    print(f"true locations {np.asarray(TRUE_LOCS)}, posterior mean {locs}")
    print(f"state path recovered at {100 * accuracy:.1f}% of the time steps")
    plot(args.out, y, states, inferred, posterior_mean["locs"])
    print(f"plot written to {args.out}")
    return {
        "accuracy": accuracy,
        "scale": float(posterior_mean["scale"]),
        **{f"loc_{i}": float(v) for i, v in enumerate(posterior_mean["locs"])},
    }


if __name__ == "__main__":
    main()
