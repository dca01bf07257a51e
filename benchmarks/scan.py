"""plait's ``scan`` against NumPyro's ``scan`` on the Gaussian HMM of the seed docs.

For T = 10, 1000 (and 100000 with ``--full``), measured side by side in one run:

* jitted log density, value and gradient (all sites valued: x substituted, y observed):
  compile time (first call) and median steady state; also a hand-vectorised log density,
  the target (BENCHMARKS.md §2: within 1.2x);
* un-jitted ``trace(seed(model))`` with y observed: first call (compiles) and the median
  of later calls with new seeds (NumPyro recompiles every call; plait reuses its loop).

Run: ``python benchmarks/scan.py [--full] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.control_flow import scan as numpyro_scan
from numpyro.infer.util import log_density as numpyro_log_density

import plait
import plait.handlers as ph
from plait.control_flow import scan as plait_scan
from plait.control_flow import scan_cache_clear


def gaussian_hmm_factory(sample: Callable[..., Any], scan: Callable[..., Any]) -> Any:
    def gaussian_hmm(y: Any = None, T: int = 10) -> Any:
        def transition(x_prev: Any, y_curr: Any) -> Any:
            x_curr = sample("x", dist.Normal(x_prev, 1))
            y_curr = sample("y", dist.Normal(x_curr, 1), obs=y_curr)
            return x_curr, (x_curr, y_curr)

        x0 = sample("x_0", dist.Normal(0, 1))
        _, (x, y) = scan(transition, x0, y, length=T)
        return (x, y)

    return gaussian_hmm


plait_model = gaussian_hmm_factory(plait.sample, plait_scan)
numpyro_model = gaussian_hmm_factory(numpyro.sample, numpyro_scan)


def plait_log_density(params: dict[str, Any], y: Any) -> Any:
    tr = ph.trace(ph.substitute(plait_model, data=params)).get_trace(y, T=y.shape[0])
    total = jnp.zeros(())
    for site in tr.values():
        if site.type == "sample":
            lp = site.fn.log_prob(site.value)
            total = total + (lp if site.scale is None else site.scale * lp).sum()
    return total


def numpyro_ld(params: dict[str, Any], y: Any) -> Any:
    return numpyro_log_density(numpyro_model, (y,), {"T": y.shape[0]}, params)[0]


def hand_log_density(params: dict[str, Any], y: Any) -> Any:
    x0, x = params["x_0"], params["x"]
    prev = jnp.concatenate([x0[None], x[:-1]])
    return (
        dist.Normal(0.0, 1.0).log_prob(x0)
        + dist.Normal(prev, 1.0).log_prob(x).sum()
        + dist.Normal(x, 1.0).log_prob(y).sum()
    )


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def bench_log_density(T: int, repeats: int) -> dict[str, tuple[float, float]]:
    key = jax.random.key(T)
    y = jax.random.normal(key, (T,))
    params = {"x_0": jnp.zeros(()), "x": jnp.cumsum(jax.random.normal(key, (T,))) * 0.1}
    fns = {
        "plait": jax.jit(jax.value_and_grad(plait_log_density)),
        "numpyro": jax.jit(jax.value_and_grad(numpyro_ld)),
        "hand": jax.jit(jax.value_and_grad(hand_log_density)),
    }
    compile_s = {name: timed(lambda f=f: f(params, y)) for name, f in fns.items()}
    values = {name: float(f(params, y)[0]) for name, f in fns.items()}
    ref = values["hand"]
    for name, v in values.items():
        assert abs(v - ref) <= 1e-4 * abs(ref), (name, v, ref)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, f in fns.items():  # interleaved
            samples[name].append(timed(lambda f=f: f(params, y)))
    return {name: (compile_s[name], statistics.median(samples[name])) for name in fns}


def bench_unjitted(T: int, repeats: int) -> dict[str, tuple[float, float]]:
    y = jax.random.normal(jax.random.key(T), (T,))
    runs = {
        "plait": lambda i: ph.trace(ph.seed(plait_model, rng_seed=i)).get_trace(y, T=T),
        "numpyro": lambda i: numpyro.handlers.trace(
            numpyro.handlers.seed(numpyro_model, rng_seed=i)
        ).get_trace(y, T=T),
    }

    def value(tr: Any) -> Any:
        site = tr["x"]
        return site.value if hasattr(site, "value") else site["value"]

    # warm JAX itself (random, dispatch) on another length, so the first call below
    # measures the model's own trace and compile for both libraries
    warm_y = jnp.zeros(3)
    ph.trace(ph.seed(plait_model, rng_seed=0)).get_trace(warm_y, T=3)
    numpyro.handlers.trace(numpyro.handlers.seed(numpyro_model, rng_seed=0)).get_trace(warm_y, T=3)
    scan_cache_clear()
    first = {name: timed(lambda r=r: value(r(0))) for name, r in runs.items()}
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(1, repeats + 1):
        for name, r in runs.items():
            samples[name].append(timed(lambda r=r, i=i: value(r(i))))
    return {name: (first[name], statistics.median(samples[name])) for name in runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also T = 100000")
    parser.add_argument("--repeats", type=int, default=7, help="un-jitted calls per size")
    parser.add_argument(
        "--ld-repeats", type=int, default=41, help="steady-state log density calls per size"
    )
    args = parser.parse_args()
    sizes = [10, 1000] + ([100000] if args.full else [])
    print(f"jax {jax.__version__}, numpyro {numpyro.__version__}, backend {jax.default_backend()}")
    print()
    print("jitted log density, value + grad (x substituted, y observed)")
    header = (
        f"{'T':>7} | {'compile s: plait':>16} {'numpyro':>8} {'ratio':>6} | "
        f"{'steady ms: plait':>16} {'numpyro':>8} {'hand':>8} | "
        f"{'numpyro/plait':>13} {'plait/hand':>10}"
    )
    print(header)
    print("-" * len(header))
    for T in sizes:
        r = bench_log_density(T, args.ld_repeats)
        (pc, ps), (nc, ns), (_, hs) = r["plait"], r["numpyro"], r["hand"]
        print(
            f"{T:>7} | {pc:>16.3f} {nc:>8.3f} {nc / pc:>6.1f} | {ps * 1e3:>16.3f} "
            f"{ns * 1e3:>8.3f} {hs * 1e3:>8.3f} | {ns / ps:>13.2f} {ps / hs:>10.2f}"
        )
    print()
    print("un-jitted trace(seed(model)) with y observed (x drawn)")
    header = (
        f"{'T':>7} | {'1st call s: plait':>17} {'numpyro':>8} | "
        f"{'later calls ms: plait':>21} {'numpyro':>8} | {'numpyro/plait (later)':>21}"
    )
    print(header)
    print("-" * len(header))
    for T in sizes:
        r = bench_unjitted(T, args.repeats)
        (pf, ps), (nf, ns) = r["plait"], r["numpyro"]
        print(
            f"{T:>7} | {pf:>17.3f} {nf:>8.3f} | {ps * 1e3:>21.3f} {ns * 1e3:>8.1f} | "
            f"{ns / ps:>21.1f}"
        )


if __name__ == "__main__":
    main()
