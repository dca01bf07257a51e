"""Variational-inference rows of ``benchmarks/inference.py`` (``--vi``): autoguide SVI steps
and ``Predictive`` calls, plait against NumPyro in one run.

1. SVI step time in a compiled loop (``lax.scan`` over ``svi.update`` under ``jit``, median
   of repeats, NumPyro and plait interleaved) for AutoDiagonalNormal,
   AutoMultivariateNormal, AutoLowRankMultivariateNormal and AutoIAFNormal on Bayesian
   linear regression (N observations, D = 10, Adam).
2. ``Predictive`` wall time, first call (traces and compiles) and second call (new
   draws, same shapes), with 1000 posterior draws: the regression, and an AR(2) written
   as a Python loop over T = 40 sites (140 with ``--full``: the whole-model compile then
   takes minutes); mapped (``parallel=False``, the default of both libraries, compiled)
   and vmapped (``parallel=True``, uncompiled in both).

Run with ``python benchmarks/inference.py --vi`` or ``python benchmarks/inference_vi.py``.
"""

from __future__ import annotations

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
import numpyro.infer.autoguide as numpyro_autoguide
import optax
from jax import lax, random
from numpyro.infer import SVI as NUMPYRO_SVI
from numpyro.infer import Predictive as NumPyroPredictive
from numpyro.infer import Trace_ELBO as NUMPYRO_TRACE_ELBO

import plait
import plait.infer.autoguide as autoguide
from plait.infer import SVI, Predictive, Trace_ELBO

GUIDES = (
    "AutoDiagonalNormal",
    "AutoMultivariateNormal",
    "AutoLowRankMultivariateNormal",
    "AutoIAFNormal",
)

Row = tuple[str, float, float]


def regression(lib: Any) -> Callable[..., None]:
    def model(x: Any, y: Any = None) -> None:
        w = lib.sample("w", dist.Normal(jnp.zeros(x.shape[1]), 1.0).to_event(1))
        b = lib.sample("b", dist.Normal(0.0, 1.0))
        sigma = lib.sample("sigma", dist.HalfNormal(1.0))
        with lib.plate("data", x.shape[0]):
            lib.sample("y", dist.Normal(x @ w + b, sigma), obs=y)

    return model


def ar2(lib: Any, length: int) -> Callable[..., None]:
    """NumPyro's ar2 example written as a Python for-loop: one site per time step."""

    def model(y: Any = None) -> None:
        alpha_1 = lib.sample("alpha_1", dist.Normal(0.0, 1.0))
        alpha_2 = lib.sample("alpha_2", dist.Normal(0.0, 1.0))
        const = lib.sample("const", dist.Normal(0.0, 1.0))
        sigma = lib.sample("sigma", dist.HalfNormal(1.0))
        prev, prev2 = jnp.zeros(()), jnp.zeros(())
        for t in range(length):
            mean = const + alpha_1 * prev + alpha_2 * prev2
            value = lib.sample(f"y_{t}", dist.Normal(mean, sigma), obs=None if y is None else y[t])
            prev, prev2 = value, prev

    return model


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def _data(n: int, d: int) -> tuple[Any, Any]:
    kx, kw, ky = random.split(random.key(0), 3)
    x = random.normal(kx, (n, d))
    y = x @ random.normal(kw, (d,)) + 0.5 + 0.3 * random.normal(ky, (n,))
    return x, y


def bench_autoguide_steps(n: int, d: int, steps: int, repeat: int) -> list[Row]:
    """The SVI step time of each autoguide, plait and NumPyro side by side."""
    x, y = _data(n, d)
    rows = []
    for name in GUIDES:
        ours_model, theirs_model = regression(plait), regression(numpyro)
        ours = SVI(ours_model, getattr(autoguide, name)(ours_model), optax.adam(1e-3), Trace_ELBO())
        theirs = NUMPYRO_SVI(
            theirs_model,
            getattr(numpyro_autoguide, name)(theirs_model),
            optax.adam(1e-3),
            NUMPYRO_TRACE_ELBO(),
        )
        ours_state, theirs_state = ours.init(random.key(1), x, y), theirs.init(random.key(1), x, y)

        def loop(svi: Any) -> Any:
            def run(state: Any) -> Any:
                return lax.scan(lambda s, _: svi.update(s, x, y), state, None, length=steps)

            return jax.jit(run)

        ours_loop, theirs_loop = loop(ours), loop(theirs)
        _timed(lambda: ours_loop(ours_state))  # compile  # noqa: B023
        _timed(lambda: theirs_loop(theirs_state))  # noqa: B023
        ours_times, theirs_times = [], []
        for _ in range(repeat):
            ours_times.append(_timed(lambda: ours_loop(ours_state)) / steps)  # noqa: B023
            theirs_times.append(_timed(lambda: theirs_loop(theirs_state)) / steps)  # noqa: B023
        rows.append(
            (
                f"SVI step {name} [us]",
                statistics.median(ours_times) * 1e6,
                statistics.median(theirs_times) * 1e6,
            )
        )
    return rows


def _posterior(names: dict[str, tuple[int, ...]], draws: int) -> dict[str, Any]:
    keys = random.split(random.key(5), len(names))
    samples = {}
    for key, (name, shape) in zip(keys, names.items(), strict=True):
        value = 0.3 * random.normal(key, (draws, *shape))
        samples[name] = jnp.abs(value) + 0.5 if name == "sigma" else value
    return samples


def _predictive_case(
    label: str, n: int, d: int, draws: int, length: int
) -> tuple[Callable[[Any], Callable[..., None]], dict[str, Any], tuple[Any, ...]]:
    if label == "regression":
        x, _ = _data(n, d)
        return regression, _posterior({"w": (d,), "b": (), "sigma": ()}, draws), (x,)
    names = {"alpha_1": (), "alpha_2": (), "const": (), "sigma": ()}
    return (lambda lib: ar2(lib, length)), _posterior(names, draws), ()


def _first_and_second(
    which: str, label: str, parallel: bool, n: int, d: int, draws: int, length: int
) -> tuple[float, float]:
    make, samples, args = _predictive_case(label, n, d, draws, length)
    if which == "plait":
        predictive: Any = Predictive(make(plait), samples, parallel=parallel)
    else:
        predictive = NumPyroPredictive(make(numpyro), samples, parallel=parallel)
    first = _timed(lambda: predictive(random.key(0), *args))
    second = _timed(lambda: predictive(random.key(1), *args))
    return first, second


def bench_predictive(n: int, d: int, draws: int, length: int) -> list[Row]:
    """``Predictive`` first and second call, plait and NumPyro side by side. Each pair of
    calls runs in a fresh process, so neither library's first call finds operations the
    other compiled (uncompiled JAX caches its per-operation programs process-wide)."""
    rows = []
    for label in ("regression", "ar2"):
        name = "regression" if label == "regression" else f"AR(2), T = {length} unrolled"
        for parallel in (False, True):
            times = {}
            for which in ("plait", "numpyro"):
                command = [
                    sys.executable,
                    __file__,
                    "--predictive",
                    which,
                    label,
                    str(int(parallel)),
                    str(n),
                    str(d),
                    str(draws),
                    str(length),
                ]
                output = subprocess.run(command, capture_output=True, text=True, check=True)
                times[which] = [float(v) for v in output.stdout.split()[-2:]]
            mode = "vmap" if parallel else "map"
            for i, call in enumerate(("1st", "2nd")):
                rows.append(
                    (
                        f"Predictive {name}, {mode}, {call} [s]",
                        times["plait"][i],
                        times["numpyro"][i],
                    )
                )
    return rows


def vi_rows(n: int, steps: int, repeat: int, length: int = 40) -> list[Row]:
    """Every row of the VI suite (an AR(2) of ``length`` sites)."""
    return bench_autoguide_steps(n, 10, steps, repeat) + bench_predictive(n, 10, 1000, length)


def print_rows(rows: list[Row]) -> None:
    print(f"\n{'quantity':48} {'plait':>10} {'numpyro':>10} {'ratio':>8}")
    for name, ours, theirs in rows:
        print(f"{name:48} {ours:10.4g} {theirs:10.4g} {ours / theirs:8.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--predictive"]:
        which, label, parallel, n, d, draws, length = sys.argv[2:9]
        first, second = _first_and_second(
            which, label, parallel == "1", int(n), int(d), int(draws), int(length)
        )
        print(first, second)
        sys.exit(0)
    print(f"jax {jax.__version__}, numpyro {numpyro.__version__}, backend {jax.default_backend()}")
    print_rows(vi_rows(1000, 2000, 5))
    print("\nratio = plait / NumPyro: below 1 is faster.")
