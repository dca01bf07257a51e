"""Persistent compile cache: the first call of a second process over the first's.

BENCHMARKS.md §4 target: a second process's first ``MCMC.run`` at most 0.2x the first
process's. Each workload runs in a fresh process twice with
``plait.infer.enable_compilation_cache(dir)``: first with an empty ``dir`` (it compiles
and writes), then again (it loads). The time is the workload's first call, imports
excluded; the pair is repeated with a new ``dir`` (``--repeats``), workloads interleaved,
and the medians are printed with the cache hits and misses JAX counted in each process.

- ``MCMC.run``: NUTS, logistic regression N=1000, D=10, 500 warm-up + 1000 draws
  (BENCHMARKS.md §2);
- ``MCMC.run hmm``: NUTS on an enumerated ``scan`` HMM (K=3, T=300), 200 + 200;
- ``SVI.run``: ``AutoNormal`` on the regression, 1000 steps;
- ``Predictive``: 1000 posterior-predictive draws of the regression, jitted;
- ``log_density``: ``jax.jit(jax.value_and_grad(...))`` of the regression.

Run ``python benchmarks/compile_cache.py`` (``hatch run bench:compile_cache``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

WORKLOADS = ("MCMC.run", "MCMC.run hmm", "SVI.run", "Predictive", "log_density")


def worker(name: str, cache: str) -> None:
    """Run workload ``name`` once with the cache in ``cache``; print its first-call time."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import numpyro.distributions as dist
    import optax

    import plait
    from plait.control_flow import scan
    from plait.infer import (
        MCMC,
        NUTS,
        SVI,
        AutoNormal,
        Predictive,
        Trace_ELBO,
        enable_compilation_cache,
        log_density,
    )

    enable_compilation_cache(cache)
    events: Counter[str] = Counter()
    jax.monitoring.register_event_listener(lambda event, **_: events.update([event]))

    def regression(x: Any, y: Any = None) -> None:
        w = plait.sample("w", dist.Normal(jnp.zeros(x.shape[1]), 1.0).to_event(1))
        b = plait.sample("b", dist.Normal(0.0, 1.0))
        with plait.plate("data", x.shape[0]):
            plait.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)

    def hmm(ys: Any) -> None:
        trans = plait.sample("trans", dist.Dirichlet(jnp.ones((3, 3))).to_event(1))
        locs = plait.sample("locs", dist.Normal(jnp.zeros(3), 3.0).to_event(1))

        def step(z: Any, y_t: Any) -> Any:
            z = plait.sample("z", dist.Categorical(trans[z]), infer={"enumerate": "parallel"})
            plait.sample("y", dist.Normal(locs[z], 1.0), obs=y_t)
            return z, None

        scan(step, 0, ys)

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(1000, 10)), jnp.float32)
    y = jnp.asarray(rng.random(1000) < 0.5, jnp.float32)
    ys = jnp.asarray(rng.normal(size=300), jnp.float32)
    key = jax.random.key(0)
    draws = {"w": jnp.zeros((1000, 10)), "b": jnp.zeros(1000)}

    def nuts(model: Callable[..., Any], warmup: int, samples: int, *args: Any) -> Any:
        mcmc = MCMC(NUTS(model), num_warmup=warmup, num_samples=samples, progress_bar=False)
        mcmc.run(key, *args)
        return mcmc.get_samples()

    def density(p: Any) -> Any:
        return log_density(regression, (x, y), {}, p)[0]

    runs: dict[str, Callable[[], Any]] = {
        "MCMC.run": lambda: nuts(regression, 500, 1000, x, y),
        "MCMC.run hmm": lambda: nuts(hmm, 200, 200, ys),
        "SVI.run": lambda: SVI(regression, AutoNormal(regression), optax.adam(1e-2), Trace_ELBO())
        .run(key, 1000, x, y, progress_bar=False)
        .params,
        "Predictive": lambda: jax.jit(lambda k: Predictive(regression, draws)(k, x))(key),
        "log_density": lambda: jax.jit(jax.value_and_grad(density))(
            {"w": jnp.zeros(10), "b": jnp.zeros(())}
        ),
    }
    start, cpu_start = time.perf_counter(), time.process_time()
    jax.block_until_ready(runs[name]())
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    hits = events["/jax/compilation_cache/cache_hits"]
    misses = events["/jax/compilation_cache/cache_misses"]
    print(json.dumps({"seconds": seconds, "cpu": cpu, "hits": hits, "misses": misses}))


def launch(name: str, cache: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", name, cache],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="cold/warm pairs per workload")
    parser.add_argument("--only", nargs="*", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--worker", nargs=2, metavar=("WORKLOAD", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    import jax

    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {args.repeats} pairs each")
    rows: dict[str, list[tuple[dict[str, float], dict[str, float]]]] = {n: [] for n in args.only}
    for r in range(args.repeats):  # interleaved: every workload once per round
        for name in args.only:
            with tempfile.TemporaryDirectory() as cache:
                cold = launch(name, cache)
                warm = launch(name, cache)
            rows[name].append((cold, warm))
            print(f"  round {r + 1}: {name}: {cold['seconds']:.2f} s -> {warm['seconds']:.2f} s")
    print(
        f"{'workload':<14} | {'first s':>8} {'misses':>6} | {'second s':>8} {'hits':>5} "
        f"{'misses':>6} | {'second/first':>12} {'(CPU time)':>10}"
    )
    for name, pairs in rows.items():
        cold_s = statistics.median(c["seconds"] for c, _ in pairs)
        warm_s = statistics.median(w["seconds"] for _, w in pairs)
        ratio = statistics.median(w["seconds"] / c["seconds"] for c, w in pairs)
        cpu_ratio = statistics.median(w["cpu"] / c["cpu"] for c, w in pairs)
        cold, warm = pairs[-1]
        print(
            f"{name:<14} | {cold_s:8.2f} {cold['misses']:>6} | {warm_s:8.2f} {warm['hits']:>5} "
            f"{warm['misses']:>6} | {ratio:12.2f} {cpu_ratio:10.2f}"
        )
    print(
        "first-call seconds (median), imports excluded; second/first: median over the pairs "
        "of the wall time (and of the process's CPU time, less sensitive to other jobs)."
    )


if __name__ == "__main__":
    main()
