"""NUTS on the seed's Gaussian HMM with unknown noise scales: the latent path collapsed by
`plait.gaussian.collapse` against the path sampled, plait and NumPyro side by side.

Model: ``s, o ~ HalfNormal(1)``, ``x_0 ~ N(0, 1)``, ``x_t ~ N(x_{t-1}, s)``,
``y_t ~ N(x_t, o)`` as one ``scan`` body, T steps simulated at s = 0.3, o = 0.5.

1. ESS/s of the noise scales (the smaller of the two ESS, by
   ``plait.infer.effective_sample_size``, over the wall time of a second ``MCMC.run``
   with a new key, so compilation is left out for every sampler; the first run's wall
   time, compilation included, is printed too): plait NUTS with x collapsed, plait NUTS
   with x sampled, NumPyro NUTS with x sampled (NumPyro has no Kalman collapse). Runs
   interleaved; every result is blocked on.
2. Value + gradient (w.r.t. s and o) of the collapsed log density against a hand-written
   JAX scalar Kalman filter in ``lax.scan`` (the same marginal): steady-state median.

Run ``hatch run bench:collapse`` (T = 100, 500 warm-up + 1000 draws; a few minutes on
2 cores) or ``--length``, ``--warmup``, ``--samples``. Target (BENCHMARKS.md §4): the
collapsed ESS/s at least 10x NumPyro's NUTS with x sampled.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax import lax
from numpyro.contrib.control_flow import scan as numpyro_scan
from numpyro.infer import MCMC as NMCMC
from numpyro.infer import NUTS as NNUTS

import plait
from plait.control_flow import scan as plait_scan
from plait.gaussian import collapse
from plait.infer import MCMC, NUTS, effective_sample_size, log_density
from plait.kernels import AffineGaussian, kalman_filter

SCALES = ("s", "o")


def gaussian_hmm(sample: Callable[..., Any], scan: Callable[..., Any]) -> Callable[..., None]:
    def model(y: Any) -> None:
        s = sample("s", dist.HalfNormal(1.0))
        o = sample("o", dist.HalfNormal(1.0))

        def transition(x_prev: Any, y_t: Any) -> Any:
            x = sample("x", dist.Normal(x_prev, s))
            sample("y", dist.Normal(x, o), obs=y_t)
            return x, None

        scan(transition, sample("x_0", dist.Normal(0.0, 1.0)), y)

    return model


def simulate(length: int) -> jax.Array:
    rng = np.random.default_rng(0)
    x = rng.normal() + np.cumsum(0.3 * rng.normal(size=length))
    return jnp.asarray(x + 0.5 * rng.normal(size=length), jnp.float32)


def kalman_by_hand(y: jax.Array, s: jax.Array, o: jax.Array) -> jax.Array:
    """The scalar Kalman filter's marginal log-likelihood of ``y`` (covariance form)."""

    def step(carry: Any, y_t: jax.Array) -> Any:
        m, p = carry
        p = p + s**2
        v = p + o**2
        ll = -0.5 * (jnp.log(2 * jnp.pi * v) + (y_t - m) ** 2 / v)
        gain = p / v
        return (m + gain * (y_t - m), (1 - gain) * p), ll

    _, lls = lax.scan(step, (jnp.zeros(()), jnp.ones(())), y)
    return jnp.sum(lls)


def min_ess(samples: dict[str, Any]) -> float:
    return min(float(effective_sample_size(np.asarray(samples[k])[None])) for k in SCALES)


def run_mcmc(kind: str, y: jax.Array, warmup: int, draws: int) -> tuple[float, float, float]:
    """(first wall, second wall, ESS of the second run's scales) for one sampler."""
    if kind == "numpyro sampled":
        mcmc: Any = NMCMC(
            NNUTS(gaussian_hmm(numpyro.sample, numpyro_scan)),
            num_warmup=warmup,
            num_samples=draws,
            progress_bar=False,
        )
    else:
        model = gaussian_hmm(plait.sample, plait_scan)
        model = collapse(model) if kind == "plait collapsed" else model
        mcmc = MCMC(NUTS(model), num_warmup=warmup, num_samples=draws, progress_bar=False)
    walls = []
    for seed in (1, 2):
        start = time.perf_counter()
        mcmc.run(jax.random.key(seed) if kind != "numpyro sampled" else jax.random.PRNGKey(seed), y)
        samples = jax.block_until_ready(mcmc.get_samples())
        walls.append(time.perf_counter() - start)
    return walls[0], walls[1], min_ess(samples)


def value_and_grad_times(length: int, repeats: int = 20) -> tuple[float, float, float, float]:
    y = simulate(length)
    model = collapse(gaussian_hmm(plait.sample, plait_scan))

    def collapsed(s: jax.Array, o: jax.Array) -> jax.Array:
        return log_density(model, (y,), {}, {"s": s, "o": o})[0]

    def by_hand(s: jax.Array, o: jax.Array) -> jax.Array:
        half = dist.HalfNormal(1.0)
        return kalman_by_hand(y, s, o) + half.log_prob(s) + half.log_prob(o)

    def kernel(s: jax.Array, o: jax.Array) -> jax.Array:
        one = jnp.ones((1, 1, 1))
        zero = jnp.zeros((1, 1))
        walk, noisy = AffineGaussian(one, zero, s * one), AffineGaussian(one, zero, o * one)
        half = dist.HalfNormal(1.0)
        value = kalman_filter(jnp.zeros(1), jnp.eye(1), walk, noisy, y[:, None]).log_normalizer
        return value + half.log_prob(s) + half.log_prob(o)

    fns = {
        "collapsed": jax.jit(jax.value_and_grad(collapsed, argnums=(0, 1))),
        "kernel": jax.jit(jax.value_and_grad(kernel, argnums=(0, 1))),
        "by hand": jax.jit(jax.value_and_grad(by_hand, argnums=(0, 1))),
    }
    s, o = jnp.asarray(0.3), jnp.asarray(0.5)
    values = {name: jax.block_until_ready(fn(s, o)) for name, fn in fns.items()}
    gap = abs(float(values["collapsed"][0]) - float(values["by hand"][0]))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(s, o))
            times[name].append(time.perf_counter() - start)
    return (
        statistics.median(times["collapsed"]),
        statistics.median(times["kernel"]),
        statistics.median(times["by hand"]),
        gap / abs(float(values["by hand"][0])),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    y = simulate(args.length)
    print(f"T = {args.length}, {args.warmup} warm-up + {args.samples} draws, one chain")
    print(
        f"{'sampler':18} {'1st wall s':>10} {'2nd wall s':>10} {'min ESS':>8} "
        f"{'ESS/s (2nd)':>11} {'ESS/s (1st)':>11}"
    )
    rates, firsts = {}, {}
    for kind in ("plait collapsed", "plait sampled", "numpyro sampled"):
        first, second, ess = run_mcmc(kind, y, args.warmup, args.samples)
        rates[kind], firsts[kind] = ess / second, ess / first
        print(
            f"{kind:18} {first:10.2f} {second:10.2f} {ess:8.0f} {rates[kind]:11.1f} "
            f"{firsts[kind]:11.1f}"
        )
    print("ratios to NumPyro's NUTS with x sampled (2nd run; 1st run, compilation included):")
    for kind in rates:
        print(
            f"  {kind:18} {rates[kind] / rates['numpyro sampled']:7.1f}x "
            f"{firsts[kind] / firsts['numpyro sampled']:7.1f}x"
        )

    print("\nvalue+grad of the log density w.r.t. (s, o), steady-state median")
    print(
        f"{'T':>7} {'collapsed ms':>13} {'kernel ms':>10} {'by hand ms':>11} "
        f"{'collapsed/by hand':>18} {'rel. gap':>9}"
    )
    for length in (1_000, 10_000):
        ours, kernel, theirs, gap = value_and_grad_times(length)
        print(
            f"{length:7d} {ours * 1e3:13.3f} {kernel * 1e3:10.3f} {theirs * 1e3:11.3f} "
            f"{ours / theirs:18.2f} {gap:9.1e}"
        )


if __name__ == "__main__":
    main()
