"""Effect-handler overhead: plait against NumPyro, measured side by side in one run.

1. Per-site un-jitted ``trace(seed(model))`` time, N = 10, 100, 1000 scalar sample sites.
2. Compile time of the jitted log density (value and gradient) of the same models.
3. ``import plait`` with every installed plugin, against ``import jax`` alone.

Run: ``hatch run bench:overhead`` (or ``python benchmarks/overhead.py``).
Target (BENCHMARKS.md §2): per-site overhead at most half of NumPyro's; imports add under
0.1 s to jax.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import numpyro.handlers as nh
from numpyro.infer.util import log_density as numpyro_log_density

import plait
import plait.handlers as ph


def make_model(sample: Callable[..., Any], n: int) -> Callable[[], None]:
    normal = dist.Normal(0.0, 1.0)

    def model() -> None:
        for i in range(n):
            sample(f"x{i}", normal)

    return model


def plait_log_density(model: Callable[[], None], params: dict[str, Any]) -> jax.Array:
    tr = ph.trace(ph.substitute(model, data=params)).get_trace()
    total = jnp.zeros(())
    for site in tr.values():
        if site.type == "sample":
            total = total + jnp.sum(site.fn.log_prob(site.value))
    return total


def time_calls(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def per_site(n: int, repeat: int) -> tuple[float, float]:
    ours = make_model(plait.sample, n)
    theirs = make_model(numpyro.sample, n)
    run_ours = lambda: ph.trace(ph.seed(ours, rng_seed=0)).get_trace()  # noqa: E731
    run_theirs = lambda: nh.trace(nh.seed(theirs, rng_seed=0)).get_trace()  # noqa: E731
    run_ours(), run_theirs()  # warm the eager dispatch caches
    t_ours, t_theirs = [], []
    for _ in range(repeat):  # interleaved A, B, A, B
        t_ours.append(time_calls(run_ours, 1))
        t_theirs.append(time_calls(run_theirs, 1))
    return statistics.median(t_ours) / n, statistics.median(t_theirs) / n


def compile_time(n: int) -> tuple[float, float]:
    params = {f"x{i}": jnp.asarray(0.1 * i) for i in range(n)}
    ours = make_model(plait.sample, n)
    theirs = make_model(numpyro.sample, n)
    f_ours = jax.jit(jax.value_and_grad(lambda p: plait_log_density(ours, p)))
    f_theirs = jax.jit(jax.value_and_grad(lambda p: numpyro_log_density(theirs, (), {}, p)[0]))
    start = time.perf_counter()
    jax.block_until_ready(f_ours(params))
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(f_theirs(params))
    t_theirs = time.perf_counter() - start
    return t_ours, t_theirs


def import_time(statement: str, repeat: int) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    times = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        times.append(float(out.stdout))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-compile", action="store_true", help="skip the compile timings")
    args = parser.parse_args()

    print("per-site un-jitted trace(seed(model)), microseconds per site")
    print(f"{'N':>6} {'plait':>10} {'numpyro':>10} {'ratio':>8}")
    for n in (10, 100, 1000):
        ours, theirs = per_site(n, max(3, args.repeat // (1 + n // 200)))
        print(f"{n:>6} {ours * 1e6:>10.1f} {theirs * 1e6:>10.1f} {ours / theirs:>8.3f}")

    if not args.no_compile:
        print("\njitted log density value+grad, first call (compile) seconds")
        print(f"{'N':>6} {'plait':>10} {'numpyro':>10} {'ratio':>8}")
        for n in (10, 100, 1000):
            ours, theirs = compile_time(n)
            print(f"{n:>6} {ours:>10.2f} {theirs:>10.2f} {ours / theirs:>8.3f}")

    plugins = ", ".join(f"import plait.{name}" for name in _installed_plugins())
    jax_alone = import_time("import jax, jax.numpy", args.repeat)
    with_plait = import_time(
        f"import jax, jax.numpy, plait{', ' if plugins else ''}{plugins}".replace(
            ", import ", "; import "
        ),
        args.repeat,
    )
    print("\nimport time, seconds (median of fresh interpreters)")
    print(f"import jax           {jax_alone:.3f}")
    print(
        f"+ plait and plugins  {with_plait:.3f}   (adds {with_plait - jax_alone:+.3f} s; "
        f"plugins: {', '.join(_installed_plugins()) or 'none'})"
    )


def _installed_plugins() -> list[str]:
    import importlib.util

    names = ["handlers", "control_flow", "enum", "nn", "infer"]
    return [n for n in names if importlib.util.find_spec(f"plait.{n}") is not None]


if __name__ == "__main__":
    main()
