"""HMM marginal likelihood with the discrete state enumerated out: value + grad.

BENCHMARKS.md §1. K hidden states, softmax transition logits (K x K), Normal emissions
with per-state means, T observations, the state a ``scan`` body site marked
``infer={"enumerate": "parallel"}`` (x_0 ~ A[0] from the carry 0). Timed side by side in
one run, interleaved (rotating the order each round), each ``jax.jit(jax.value_and_grad(...))``; the first call
(compile) apart from the median of the steady-state calls:

- plait:       ``plait.enum.log_density`` of the model written with ``plait.control_flow.scan``;
- numpyro:     ``numpyro.contrib.control_flow.scan`` + ``numpyro.contrib.funsor.log_density``
               over ``enum(config_enumerate(model), first_available_dim=-1)``;
- seq_log:     ``lax.scan`` forward recursion with ``logsumexp`` per step;
- seq_scaled:  emission likelihoods ``exp(e - max)`` computed once, vectorised; then
               ``a = (a @ A) * L_t`` normalised each step, log normalisers summed;
- tree_scaled: pairwise tree reduction of the rescaled step matrices (O(log T) depth).

Run ``python benchmarks/hmm.py`` (the cells that take a few minutes) or with ``--full``.
Prints the table and the ratios plait / best hand-written kernel and numpyro / plait,
and the float32 relative error of each value and gradient against a float64 reference.
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
from numpyro.contrib.control_flow import scan as np_scan
from numpyro.contrib.funsor import config_enumerate as np_config
from numpyro.contrib.funsor import enum as np_enum
from numpyro.contrib.funsor import log_density as np_log_density

import plait
from plait.control_flow import scan as pl_scan
from plait.enum import log_density as pl_log_density

Params = tuple[jax.Array, jax.Array]


# -- the model, twice -------------------------------------------------------------------
def plait_model(params: Params, y: jax.Array) -> None:
    logits, means = params
    trans = jax.nn.softmax(logits, -1)

    def step(x: Any, yt: Any) -> Any:
        x = plait.sample("x", dist.Categorical(trans[x]), infer={"enumerate": "parallel"})
        plait.sample("y", dist.Normal(means[x], 1.0), obs=yt)
        return x, None

    pl_scan(step, 0, y)


def numpyro_model(params: Params, y: jax.Array) -> None:
    logits, means = params
    trans = jax.nn.softmax(logits, -1)

    def step(x: Any, yt: Any) -> Any:
        x = numpyro.sample("x", dist.Categorical(trans[x]))
        numpyro.sample("y", dist.Normal(means[x], 1.0), obs=yt)
        return x, None

    np_scan(step, 0, y)


def plait_value(params: Params, y: jax.Array) -> jax.Array:
    return pl_log_density(plait_model, (params, y))[0]


def numpyro_value(params: Params, y: jax.Array) -> jax.Array:
    model = np_enum(np_config(numpyro_model), first_available_dim=-1)
    return np_log_density(model, (params, y), {}, {})[0]


# -- hand-written kernels ------------------------------------------------------------------
def _emissions(params: Params, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    logits, means = params
    return jax.nn.log_softmax(logits, -1), dist.Normal(means, 1.0).log_prob(y[:, None])


def seq_log(params: Params, y: jax.Array) -> jax.Array:
    log_a, e = _emissions(params, y)

    def step(alpha: jax.Array, e_t: jax.Array) -> tuple[jax.Array, None]:
        return jax.nn.logsumexp(alpha[:, None] + log_a, 0) + e_t, None

    alpha, _ = lax.scan(step, log_a[0] + e[0], e[1:])
    return jax.nn.logsumexp(alpha)


def seq_scaled(params: Params, y: jax.Array) -> jax.Array:
    log_a, e = _emissions(params, y)
    a = jnp.exp(log_a)
    m = lax.stop_gradient(e.max(-1, keepdims=True))
    lik = jnp.exp(e - m)
    first = a[0] * lik[0]
    n0 = first.sum()

    def step(alpha: jax.Array, l_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        alpha = (alpha @ a) * l_t
        n = alpha.sum()
        return alpha / n, jnp.log(n)

    _, logs = lax.scan(step, first / n0, lik[1:])
    return jnp.log(n0) + logs.sum() + m.sum()


def tree_scaled(params: Params, y: jax.Array) -> jax.Array:
    log_a, e = _emissions(params, y)
    a = jnp.exp(log_a)
    m = lax.stop_gradient(e.max(-1, keepdims=True))
    lik = jnp.exp(e - m)
    mats = a[None] * lik[1:, None, :]  # step t: x_{t-1} -> x_t with emission of x_t
    s = lax.stop_gradient(mats.max((-2, -1), keepdims=True))
    mats, scales = mats / s, jnp.log(s)[:, 0, 0]
    while mats.shape[0] > 1:
        n = mats.shape[0]
        half = n // 2
        prod = jnp.matmul(mats[0 : 2 * half : 2], mats[1 : 2 * half : 2])
        sc = scales[0 : 2 * half : 2] + scales[1 : 2 * half : 2]
        p = lax.stop_gradient(prod.max((-2, -1), keepdims=True))
        prod, sc = prod / p, sc + jnp.log(p)[:, 0, 0]
        if n % 2:
            prod = jnp.concatenate([prod, mats[-1:]])
            sc = jnp.concatenate([sc, scales[-1:]])
        mats, scales = prod, sc
    total = (a[0] * lik[0]) @ mats[0]
    return jnp.log(total.sum()) + scales[0] + m.sum()


def reference(params: Params, y: jax.Array) -> tuple[float, np.ndarray]:
    """float64 value and gradient (seq_log in double precision)."""
    with jax.enable_x64(True):
        p64 = tuple(jnp.asarray(np.asarray(p), jnp.float64) for p in params)
        y64 = jnp.asarray(np.asarray(y), jnp.float64)
        value, grad = jax.jit(jax.value_and_grad(seq_log))(p64, y64)
        flat = np.concatenate([np.ravel(g) for g in grad])
        return float(value), flat


# -- timing -----------------------------------------------------------------------------------
IMPLS: dict[str, Callable[[Params, jax.Array], jax.Array]] = {
    "plait": plait_value,
    "numpyro": numpyro_value,
    "seq_log": seq_log,
    "seq_scaled": seq_scaled,
    "tree_scaled": tree_scaled,
}
HAND = ("seq_log", "seq_scaled", "tree_scaled")


def problem(K: int, T: int) -> tuple[Params, jax.Array]:
    rng = np.random.default_rng(K * 100003 + T)
    logits = jnp.asarray(rng.normal(size=(K, K)) + 2.0 * np.eye(K), jnp.float32)
    means = jnp.asarray(np.linspace(-3.0, 3.0, K), jnp.float32)
    states = np.zeros(T, np.int64)
    trans = np.exp(np.asarray(logits, np.float64))
    trans /= trans.sum(-1, keepdims=True)
    x = 0
    for t in range(T):
        x = rng.choice(K, p=trans[x]) if t < 2000 else states[t - 2000]
        states[t] = x
    y = jnp.asarray(np.asarray(means)[states] + rng.normal(size=T), jnp.float32)
    # Evaluate away from the generating parameters: there the expected gradient is 0 and
    # its relative error would measure cancellation, not the kernels.
    logits = logits + jnp.asarray(0.3 * rng.normal(size=(K, K)), jnp.float32)
    means = means + 0.2
    return (logits, means), y


def run_cell(K: int, T: int, names: list[str], repeats: int) -> dict[str, dict[str, float]]:
    params, y = problem(K, T)
    ref_value, ref_grad = reference(params, y)
    fns = {name: jax.jit(jax.value_and_grad(IMPLS[name])) for name in names}
    out: dict[str, dict[str, float]] = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        value, grad = jax.block_until_ready(fn(params, y))
        compile_s = time.perf_counter() - t0
        flat = np.concatenate([np.ravel(np.asarray(g, np.float64)) for g in grad])
        out[name] = {
            "compile": compile_s,
            "value_err": abs(float(value) - ref_value) / abs(ref_value),
            "grad_err": float(np.linalg.norm(flat - ref_grad) / np.linalg.norm(ref_grad)),
            "times": [],  # type: ignore[dict-item]
        }
    order = list(fns.items())
    for r in range(repeats):  # interleaved, the order rotated each round (no fixed neighbour)
        for name, fn in order[r % len(order) :] + order[: r % len(order)]:
            t0 = time.perf_counter()
            jax.block_until_ready(fn(params, y))
            out[name]["times"].append(time.perf_counter() - t0)  # type: ignore[attr-defined]
    for row in out.values():
        row["ms"] = 1e3 * statistics.median(row.pop("times"))  # type: ignore[arg-type]
    return out


DEFAULT = [(3, 1000), (3, 10000), (16, 1000), (16, 10000), (64, 1000), (3, 100000)]
FULL = [
    (3, 1000),
    (3, 10000),
    (3, 100000),
    (16, 1000),
    (16, 10000),
    (16, 100000),
    (64, 1000),
    (64, 10000),
    (64, 100000),
]


def numpyro_feasible(K: int, T: int, full: bool) -> bool:
    if T >= 100000:
        return False
    return full or K * K * T <= 16 * 16 * 10000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="every size of BENCHMARKS.md §1")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-numpyro", action="store_true")
    args = parser.parse_args()
    cells = FULL if args.full else DEFAULT
    print(f"jax {jax.__version__}, numpyro {numpyro.__version__}, backend {jax.default_backend()}")
    print(
        f"{'K':>3} {'T':>7} | {'plait':>16} | {'numpyro':>16} | {'seq_log':>8} "
        f"{'seq_scaled':>10} {'tree_scaled':>11} | {'plait/best':>10} {'numpyro/plait':>13} "
        f"| plait err (value, grad)"
    )
    for K, T in cells:
        names = ["plait", *HAND]
        if not args.no_numpyro and numpyro_feasible(K, T, args.full):
            names.insert(1, "numpyro")
        if T >= 100000 and K >= 64:
            names.remove("tree_scaled")
        r = run_cell(K, T, names, args.repeats)
        best = min(r[n]["ms"] for n in HAND if n in r)
        npy = r.get("numpyro")
        npy_s = f"{npy['ms']:8.2f} [{npy['compile']:4.1f}s]" if npy else f"{'—':>16}"
        npy_ratio = f"{npy['ms'] / r['plait']['ms']:13.1f}" if npy else f"{'—':>13}"
        tree = f"{r['tree_scaled']['ms']:11.2f}" if "tree_scaled" in r else f"{'—':>11}"
        print(
            f"{K:>3} {T:>7} | {r['plait']['ms']:8.2f} [{r['plait']['compile']:4.1f}s] | {npy_s} | "
            f"{r['seq_log']['ms']:8.2f} {r['seq_scaled']['ms']:10.2f} {tree} | "
            f"{r['plait']['ms'] / best:10.2f} {npy_ratio} | "
            f"{r['plait']['value_err']:.1e}, {r['plait']['grad_err']:.1e}",
            flush=True,
        )
    print("ms: median steady-state value+grad; [s]: first call (trace + compile + run).")


if __name__ == "__main__":
    main()
