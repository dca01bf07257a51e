"""``cond`` and the loops of unknown length, measured side by side in one run.

* ``cond``: jitted value+grad of the log density of NumPyro's ``cond`` docstring model
  (with an observation), plait vs NumPyro (both one ``lax.switch``/``lax.cond``), and the
  per-element path (different distribution classes) vs a hand-written ``jnp.where``.
* ``while_loop`` / ``fori_loop`` with traced bounds over N observations: jitted
  value+grad, the per-iteration gradient (carry independent of the parameters) and the
  forward-mode gradient (carry depends on them), against the same model written with
  ``scan`` (stacked sites, reverse mode through ``lax.scan``) and a hand-written sum.

Run: ``python benchmarks/control_flow.py [--repeats N] [--n N]``. Figures taken while other
work shares the machine are noisy: read the ratios, measured in one run.
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
from numpyro.contrib.control_flow import cond as numpyro_cond
from numpyro.infer.util import log_density as numpyro_log_density

import plait
from plait.control_flow import cond, fori_loop, scan
from plait.infer import log_density


def timed(fn: Callable[..., Any], *args: Any, repeats: int) -> tuple[float, float]:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def cond_model(sample: Any, cond_fn: Any, same_class: bool) -> Any:
    def model(y: Any) -> Any:
        flip = sample("flip", dist.Normal())
        loc = sample("loc", dist.Normal())
        other = dist.Normal if same_class else dist.Laplace
        return cond_fn(
            flip > 0,
            lambda _: sample("y", dist.Normal(loc, 1.0), obs=y),
            lambda _: sample("y", other(-loc, 2.0), obs=y),
            None,
        )

    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    r = args.repeats
    rows: list[tuple[str, float, float]] = []
    values = {"flip": jnp.asarray(0.4), "loc": jnp.asarray(0.3)}

    ours_same = cond_model(plait.sample, cond, True)
    theirs = cond_model(numpyro.sample, numpyro_cond, True)
    ours_mixed = cond_model(plait.sample, cond, False)

    def vg(f: Callable[[Any], Any]) -> Any:
        return jax.jit(jax.value_and_grad(f))

    f_ours = vg(lambda v: log_density(ours_same, (0.7,), {}, v)[0])
    f_theirs = vg(lambda v: numpyro_log_density(theirs, (0.7,), {}, v)[0])
    f_mixed = vg(lambda v: log_density(ours_mixed, (0.7,), {}, v)[0])

    def hand(v: Any) -> Any:
        lp = dist.Normal().log_prob(v["flip"]) + dist.Normal().log_prob(v["loc"])
        chosen = jnp.where(
            v["flip"] > 0,
            dist.Normal(v["loc"], 1.0).log_prob(0.7),
            dist.Laplace(-v["loc"], 2.0).log_prob(0.7),
        )
        return lp + chosen

    f_hand = vg(hand)
    for name, f in (
        ("cond, same class: NumPyro", f_theirs),
        ("cond, same class: plait", f_ours),
        ("cond, Normal | Laplace: plait", f_mixed),
        ("cond, Normal | Laplace: hand-written where", f_hand),
    ):
        rows.append((name, *timed(f, values, repeats=r)))

    n = args.n
    data = jax.random.normal(jax.random.key(0), (n,))
    loop_values = {"mu": jnp.asarray(0.3), "sd": jnp.asarray(1.2)}

    def priors() -> tuple[Any, Any]:
        return plait.sample("mu", dist.Normal(0.0, 5.0)), plait.sample("sd", dist.LogNormal())

    def drift(n_steps: Any) -> Any:  # carry independent of mu, sd: per-iteration gradient
        mu, sd = priors()

        def body(i: Any, c: Any) -> Any:
            plait.sample("y", dist.Normal(mu + c, sd), obs=data[i])
            return c + 0.001

        return fori_loop(0, n_steps, body, 0.0)

    def walk(n_steps: Any) -> Any:  # carry depends on mu: forward-mode gradient
        mu, sd = priors()

        def body(i: Any, c: Any) -> Any:
            plait.sample("y", dist.Normal(c, sd), obs=data[i])
            return c + 0.001 * mu

        return fori_loop(0, n_steps, body, 0.0)

    def drift_scan(n_steps: int) -> Any:
        mu, sd = priors()

        def step(c: Any, y: Any) -> Any:
            plait.sample("y", dist.Normal(mu + c, sd), obs=y)
            return c + 0.001, None

        return scan(step, 0.0, data[:n_steps])

    def drift_hand(v: Any) -> Any:
        drift_c = 0.001 * jnp.arange(n)
        lp = dist.Normal(0.0, 5.0).log_prob(v["mu"]) + dist.LogNormal().log_prob(v["sd"])
        return lp + dist.Normal(v["mu"] + drift_c, v["sd"]).log_prob(data).sum()

    loop_fns = {
        "fori_loop (traced n), per-iteration gradient": jax.jit(
            jax.value_and_grad(lambda v, k: log_density(drift, (k,), {}, v)[0])
        ),
        "fori_loop (traced n), forward-mode gradient": jax.jit(
            jax.value_and_grad(lambda v, k: log_density(walk, (k,), {}, v)[0])
        ),
    }
    for name, f in loop_fns.items():
        rows.append((f"{name}, N={n}", *timed(f, loop_values, n, repeats=r)))
    f_scan = jax.jit(jax.value_and_grad(lambda v: log_density(drift_scan, (n,), {}, v)[0]))
    rows.append((f"scan (stacked sites), N={n}", *timed(f_scan, loop_values, repeats=r)))
    rows.append((f"hand-written sum, N={n}", *timed(vg(drift_hand), loop_values, repeats=r)))

    print(f"{'jitted value+grad':<58} {'first call (s)':>14} {'steady (ms)':>12}")
    for name, first, steady in rows:
        print(f"{name:<58} {first:>14.3f} {steady * 1e3:>12.3f}")


if __name__ == "__main__":
    main()
