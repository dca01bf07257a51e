"""Inference speed: plait-infer against NumPyro (and BlackJAX compiled ahead), one run.

1. SVI, Bayesian linear regression (N = 1000, D = 10, AutoNormal, Adam): the step time
   inside a compiled loop (``lax.scan`` over ``svi.update``, jitted, median of repeats),
   and ``svi.run`` wall time, first call (compiles) and second call.
2. NUTS, logistic regression (N = 1000, D = 10, 500 warm-up + 1000 draws, one chain):
   ``MCMC.run`` wall time, first and second call, and ESS per second (min and mean over
   the 11 coordinates, ESS by plait.infer.effective_sample_size for every sampler), with
   BlackJAX's ``window_adaptation`` + NUTS loop compiled ahead as the reference.

A and B are interleaved (plait, NumPyro, plait, NumPyro, ...); every result is blocked on.
3. Autoguides (``--vi``): the SVI step time in a compiled loop for AutoDiagonalNormal,
   AutoMultivariateNormal, AutoLowRankMultivariateNormal and AutoIAFNormal on the SVI
   regression, and ``Predictive`` first and second call (1000 posterior draws) on that
   regression and on an AR(2) written as a Python loop over T = 40 sites (140 with
   ``--full``), mapped (``parallel=False``, both libraries' default) and vmapped.

Run: ``hatch run bench:inference`` (or ``python benchmarks/inference.py``); ``--full`` uses
N = 10000; ``--vi`` runs suite 3 only. Targets (BENCHMARKS.md §2): SVI step time <=
NumPyro's; a second run compiles nothing (>= 5x NumPyro's wall for repeated runs); NUTS
ESS/s equal to BlackJAX compiled ahead; ``Predictive``'s first call <= NumPyro's.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from jax import lax, random
from numpyro.infer import MCMC as NMCMC
from numpyro.infer import NUTS as NNUTS
from numpyro.infer import SVI as NSVI
from numpyro.infer import Trace_ELBO as NTrace_ELBO
from numpyro.infer.autoguide import AutoNormal as NAutoNormal

import plait
from plait.infer import MCMC, NUTS, SVI, AutoNormal, Trace_ELBO, effective_sample_size


def linear_regression(lib: Any) -> Callable[..., None]:
    def model(x: Any, y: Any) -> None:
        w = lib.sample("w", dist.Normal(jnp.zeros(x.shape[1]), 1.0).to_event(1))
        b = lib.sample("b", dist.Normal(0.0, 1.0))
        sigma = lib.sample("sigma", dist.HalfNormal(1.0))
        with lib.plate("data", x.shape[0]):
            lib.sample("y", dist.Normal(x @ w + b, sigma), obs=y)

    return model


def logistic_regression(lib: Any) -> Callable[..., None]:
    def model(x: Any, y: Any) -> None:
        w = lib.sample("w", dist.Normal(jnp.zeros(x.shape[1]), 1.0).to_event(1))
        b = lib.sample("b", dist.Normal(0.0, 1.0))
        with lib.plate("data", x.shape[0]):
            lib.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)

    return model


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - start, out


def ess_stats(draws: dict[str, Any]) -> tuple[float, float]:
    """Min and mean ESS over every scalar coordinate of one chain's draws."""
    columns = [np.asarray(v).reshape(np.shape(v)[0], -1) for v in draws.values()]
    flat = np.concatenate(columns, axis=1)[None]
    ess = effective_sample_size(flat)
    return float(ess.min()), float(ess.mean())


# -- SVI ---------------------------------------------------------------------------------
def bench_svi(n: int, d: int, steps: int, repeat: int) -> list[tuple[str, float, float]]:
    kx, kw, ky = random.split(random.key(0), 3)
    x = random.normal(kx, (n, d))
    y = x @ random.normal(kw, (d,)) + 0.5 + 0.3 * random.normal(ky, (n,))
    ours_model, theirs_model = linear_regression(plait), linear_regression(numpyro)
    ours = SVI(ours_model, AutoNormal(ours_model), optax.adam(1e-2), Trace_ELBO())
    theirs = NSVI(theirs_model, NAutoNormal(theirs_model), optax.adam(1e-2), NTrace_ELBO())
    ours_state = ours.init(random.key(1), x, y)
    theirs_state = theirs.init(random.key(1), x, y)

    def loop(svi: Any) -> Any:
        def run(state: Any) -> Any:
            return lax.scan(lambda s, _: svi.update(s, x, y), state, None, length=steps)

        return jax.jit(run)

    ours_loop, theirs_loop = loop(ours), loop(theirs)
    compile_ours, _ = timed(lambda: ours_loop(ours_state))
    compile_theirs, _ = timed(lambda: theirs_loop(theirs_state))
    step_ours, step_theirs = [], []
    for _ in range(repeat):
        step_ours.append(timed(lambda: ours_loop(ours_state))[0] / steps)
        step_theirs.append(timed(lambda: theirs_loop(theirs_state))[0] / steps)
    runs_ours, runs_theirs = [], []
    for i in range(2):
        runs_ours.append(
            timed(lambda: ours.run(random.key(i), steps, x, y, progress_bar=False).losses)[0]  # noqa: B023
        )
        runs_theirs.append(
            timed(lambda: theirs.run(random.key(i), steps, x, y, progress_bar=False).losses)[0]  # noqa: B023
        )
    return [
        (
            "SVI step in a compiled loop [us]",
            statistics.median(step_ours) * 1e6,
            statistics.median(step_theirs) * 1e6,
        ),
        ("SVI compile of that loop [s]", compile_ours, compile_theirs),
        (f"svi.run({steps}) first call [s]", runs_ours[0], runs_theirs[0]),
        (f"svi.run({steps}) second call [s]", runs_ours[1], runs_theirs[1]),
    ]


# -- NUTS --------------------------------------------------------------------------------
def blackjax_ahead(
    x: Any, y: Any, warmup: int, samples: int
) -> tuple[float, float, dict[str, Any]]:
    """BlackJAX window adaptation + NUTS, compiled before timing: (compile s, run s, draws)."""

    def logdensity(p: dict[str, Any]) -> Any:
        logits = x @ p["w"] + p["b"]
        prior = dist.Normal(0.0, 1.0).log_prob(p["w"]).sum() + dist.Normal(0.0, 1.0).log_prob(
            p["b"]
        )
        return prior + dist.Bernoulli(logits=logits).log_prob(y).sum()

    def run(key: Any) -> Any:
        k1, k2, k3 = random.split(key, 3)
        init = {"w": random.uniform(k1, (x.shape[1],), minval=-2, maxval=2), "b": jnp.zeros(())}
        warm = blackjax.window_adaptation(blackjax.nuts, logdensity)
        (state, params), _ = warm.run(k2, init, num_steps=warmup)
        step = blackjax.nuts(logdensity, **params).step

        def one(state: Any, k: Any) -> Any:
            state, _ = step(k, state)
            return state, state.position

        _, draws = lax.scan(one, state, random.split(k3, samples))
        return draws

    start = time.perf_counter()
    compiled = jax.jit(run).lower(random.key(0)).compile()
    compile_time = time.perf_counter() - start
    run_time, draws = timed(lambda: compiled(random.key(1)))
    return compile_time, run_time, draws


def bench_nuts(n: int, d: int, warmup: int, samples: int) -> list[tuple[str, float, float, float]]:
    kx, kw, ky = random.split(random.key(2), 3)
    x = random.normal(kx, (n, d))
    y = random.bernoulli(ky, jax.nn.sigmoid(x @ (0.5 * random.normal(kw, (d,))) + 0.3))
    y = y.astype(jnp.float32)
    ours = MCMC(
        NUTS(logistic_regression(plait)), num_warmup=warmup, num_samples=samples, progress_bar=False
    )
    theirs = NMCMC(
        NNUTS(logistic_regression(numpyro)),
        num_warmup=warmup,
        num_samples=samples,
        progress_bar=False,
    )
    walls_ours, walls_theirs, ess_ours, ess_theirs = [], [], [], []
    for i in range(2):
        wall, _ = timed(lambda: (ours.run(random.key(i), x, y), ours.get_samples())[1])  # noqa: B023
        walls_ours.append(wall)
        ess_ours.append(ess_stats(ours.get_samples()))
        wall, _ = timed(lambda: (theirs.run(random.key(i), x, y), theirs.get_samples())[1])  # noqa: B023
        walls_theirs.append(wall)
        ess_theirs.append(ess_stats(theirs.get_samples()))
    bj_compile, bj_run, bj_draws = blackjax_ahead(x, y, warmup, samples)
    bj_ess = ess_stats(bj_draws)
    rows = [
        ("NUTS MCMC.run first call [s]", walls_ours[0], walls_theirs[0], float("nan")),
        ("NUTS MCMC.run second call [s]", walls_ours[1], walls_theirs[1], bj_run),
        # NumPyro compiles on every call, so first minus second is not its compile time.
        (
            "NUTS compile (first - second) [s]",
            walls_ours[0] - walls_ours[1],
            float("nan"),
            bj_compile,
        ),
        (
            "NUTS min ESS/s (second call)",
            ess_ours[1][0] / walls_ours[1],
            ess_theirs[1][0] / walls_theirs[1],
            bj_ess[0] / bj_run,
        ),
        (
            "NUTS mean ESS/s (second call)",
            ess_ours[1][1] / walls_ours[1],
            ess_theirs[1][1] / walls_theirs[1],
            bj_ess[1] / bj_run,
        ),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="N = 10000 instead of 1000")
    parser.add_argument("--svi-steps", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--vi", action="store_true", help="only the VI suite (inference_vi.py)")
    args = parser.parse_args()
    n = 10_000 if args.full else 1000
    print(
        f"jax {jax.__version__}, numpyro {numpyro.__version__}, blackjax {blackjax.__version__}, "
        f"backend {jax.default_backend()}, N = {n}, D = 10"
    )
    if args.vi:
        from inference_vi import print_rows, vi_rows

        print_rows(vi_rows(n, args.svi_steps, args.repeat, 140 if args.full else 40))
        print("\nratio = plait / NumPyro: below 1 is faster.")
        return
    svi_rows = bench_svi(n, 10, args.svi_steps, args.repeat)
    nuts_rows = bench_nuts(n, 10, 500, 1000)
    print(
        f"\n{'quantity':40} {'plait':>10} {'numpyro':>10} {'ratio':>8}   {'blackjax':>9} {'ratio':>7}"
    )
    for name, ours, theirs in svi_rows:
        print(f"{name:40} {ours:10.4g} {theirs:10.4g} {ours / theirs:8.2f}")
    for name, ours, theirs, bj in nuts_rows:
        np_cells = (
            f"{theirs:10.4g} {ours / theirs:8.2f}" if np.isfinite(theirs) else f"{'-':>10} {'-':>8}"
        )
        bj_cells = f"{bj:9.4g} {ours / bj:7.2f}" if np.isfinite(bj) else f"{'-':>9} {'-':>7}"
        print(f"{name:40} {ours:10.4g} {np_cells}   {bj_cells}")
    print("\nratio = plait / reference: below 1 is faster for times, above 1 is better for ESS/s.")


if __name__ == "__main__":
    main()
