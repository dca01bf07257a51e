"""plait.nn.module against numpyro.module: an MLP regression's log density and gradient.

Model: ``y ~ Normal(net(x), sigma)`` with ``net = Dense(32)-Relu-Dense(1)`` (stax), N = 1000
points of 8 features (``--full``: N = 100 000). Both sides use the same inline log density
(substitute + trace + sum of scale * log_prob), measured side by side in one run:

1. compile time of ``jit(value_and_grad(log_density))`` (lower + compile);
2. median steady-state time of the compiled call (interleaved A, B, A, B, block_until_ready);
3. median time of one un-jitted log-density evaluation (the handler overhead around the
   network, which jit removes), and of the network declaration alone (a model holding only
   the module, substituted and traced).

It also checks that both sides trace to the same jaxpr.

Run: ``python benchmarks/module.py [--full]``.
Target: (2) equal within noise (the compiled programs are the same network).
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
import numpyro.handlers as nh
from jax.example_libraries import stax

import plait
import plait.handlers as ph
from plait.nn import module

MLP = stax.serial(stax.Dense(32), stax.Relu, stax.Dense(1))
FEATURES = 8


def make_model(
    declare: Callable[..., Any], sample: Callable[..., Any], plate: Callable[..., Any]
) -> Callable[[jax.Array, jax.Array], None]:
    def model(x: jax.Array, y: jax.Array) -> None:
        net = declare("net", MLP, input_shape=(-1, FEATURES))
        sigma = sample("sigma", dist.HalfNormal(1.0))
        with plate("data", x.shape[0]):
            sample("y", dist.Normal(net(x)[..., 0], sigma), obs=y)

    return model


def make_declaration(declare: Callable[..., Any]) -> Callable[[], None]:
    def model() -> None:
        declare("net", MLP, input_shape=(-1, FEATURES))

    return model


def log_density(
    trace: Callable[..., Any], substitute: Callable[..., Any], field: Callable[[Any, str], Any]
) -> Callable[..., jax.Array]:
    """substitute + trace + sum of scale * log_prob, for either library's messages."""

    def fn(model: Callable[..., None], params: dict[str, Any], *args: Any) -> jax.Array:
        tr = trace(substitute(model, data=params)).get_trace(*args)
        total = jnp.zeros(())
        for site in tr.values():
            if field(site, "type") == "sample":
                lp = field(site, "fn").log_prob(field(site, "value"))
                scale = field(site, "scale")
                total = total + jnp.sum(lp if scale is None else scale * lp)
        return total

    return fn


plait_ld = log_density(ph.trace, ph.substitute, getattr)
numpyro_ld = log_density(nh.trace, nh.substitute, lambda site, key: site[key])


def median_call(fn: Callable[[], Any], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        jax.block_until_ready(fn())
    return (time.perf_counter() - start) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="N = 100 000")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    n = 100_000 if args.full else 1000
    number = 20 if args.full else 200

    kx, ky = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (n, FEATURES))
    y = jnp.sin(x.sum(-1)) + 0.1 * jax.random.normal(ky, (n,))
    _, net_params = MLP[0](jax.random.key(1), (-1, FEATURES))
    params = {"net$params": net_params, "sigma": jnp.asarray(0.5)}

    ours = make_model(module, plait.sample, plait.plate)
    theirs = make_model(numpyro.module, numpyro.sample, numpyro.plate)
    decl_ours, decl_theirs = make_declaration(module), make_declaration(numpyro.module)
    sides = {
        "plait": (lambda p: plait_ld(ours, p, x, y)),
        "numpyro": (lambda p: numpyro_ld(theirs, p, x, y)),
    }
    v_ours, v_theirs = (float(f(params)) for f in sides.values())
    assert abs(v_ours - v_theirs) <= 1e-5 * abs(v_theirs), (v_ours, v_theirs)
    jaxprs = [str(jax.make_jaxpr(jax.value_and_grad(f))(params)) for f in sides.values()]
    declarations = {
        "plait": (lambda: ph.trace(ph.substitute(decl_ours, data=params)).get_trace()),
        "numpyro": (lambda: nh.trace(nh.substitute(decl_theirs, data=params)).get_trace()),
    }

    compiled: dict[str, Any] = {}
    compile_times: dict[str, list[float]] = {name: [] for name in sides}
    for i in range(3):  # fresh caches each time; alternate which side compiles first
        for name in list(sides)[:: 1 if i % 2 == 0 else -1]:
            jax.clear_caches()
            start = time.perf_counter()
            compiled[name] = jax.jit(jax.value_and_grad(sides[name])).lower(params).compile()
            compile_times[name].append(time.perf_counter() - start)
    compile_s = {name: statistics.median(t) for name, t in compile_times.items()}
    for name, c in compiled.items():  # warm up
        jax.block_until_ready(c(params))
        sides[name](params)

    steady: dict[str, list[float]] = {name: [] for name in sides}
    eager: dict[str, list[float]] = {name: [] for name in sides}
    declare: dict[str, list[float]] = {name: [] for name in sides}
    for i in range(args.rounds):  # interleaved A, B, B, A, ...
        order = list(sides)[:: 1 if i % 2 == 0 else -1]
        for name in order:
            steady[name].append(median_call(lambda c=compiled[name]: c(params), number))
        for name in order:
            eager[name].append(median_call(lambda f=sides[name]: f(params), 10))
        for name in order:
            declare[name].append(median_call(declarations[name], 200))

    rows = [
        ("compile jit(value_and_grad) [ms]", compile_s["plait"], compile_s["numpyro"], 1e3),
        (
            "steady value_and_grad [us]",
            statistics.median(steady["plait"]),
            statistics.median(steady["numpyro"]),
            1e6,
        ),
        (
            "un-jitted log density [ms]",
            statistics.median(eager["plait"]),
            statistics.median(eager["numpyro"]),
            1e3,
        ),
        (
            "un-jitted network declaration [us]",
            statistics.median(declare["plait"]),
            statistics.median(declare["numpyro"]),
            1e6,
        ),
    ]
    spread = {
        name: (min(v) / statistics.median(v), max(v) / statistics.median(v))
        for name, v in steady.items()
    }
    print(f"MLP regression, N = {n}, Dense(32)-Relu-Dense(1), {jax.default_backend()}")
    print(f"{'measure':36} {'plait':>10} {'numpyro':>10} {'plait/numpyro':>14}")
    for label, a, b, unit in rows:
        print(f"{label:36} {a * unit:10.2f} {b * unit:10.2f} {a / b:14.3f}")
    print(f"same jaxpr for value_and_grad: {jaxprs[0] == jaxprs[1]}")
    print(
        "steady-state spread (min/median, max/median over rounds): "
        + ", ".join(f"{k} {lo:.2f}-{hi:.2f}" for k, (lo, hi) in spread.items())
    )


if __name__ == "__main__":
    main()
