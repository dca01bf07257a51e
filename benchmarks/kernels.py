"""Chain-contraction kernels of `plait.kernels` against hand-written references.

The question: how fast and how accurate is `chain_logsumexp` (each strategy) on
the HMM marginal likelihood of BENCHMARKS.md §1, compared with the best
hand-written kernel, and which strategy does ``"auto"`` pick?

Model: K hidden states, softmax transition logits (K x K), unit-variance Normal
emissions with per-state means, T observations, uniform initial state. Timed:
``jax.jit(jax.value_and_grad(log_marginal, argnums=(0, 1)))`` (gradient w.r.t.
logits and means), first call (compile + run) separately from the median of
steady-state calls, methods interleaved (A, B, C, A, B, C, ...), every result
``block_until_ready``. Value error: relative to a float64 NumPy forward recursion.

References (as in BENCHMARKS.md §1):
- seq_log: ``lax.scan`` forward recursion with a ``logsumexp`` per step;
- seq_scaled: emission likelihoods ``exp(e - max)`` computed once, then
  ``a = (a @ A) * L_t`` normalised each step, log normalisers summed;
- tree_scaled: pairwise tree reduction of the rescaled step matrices.
plait's kernels receive the step log-matrices ``log A + e_t`` (``T-1`` of them)
and the initial log-vector, as the enumerated ``scan`` will hand them over.

Run ``python benchmarks/kernels.py`` (K in {3, 16}, T in {1e3, 1e4}; a few
minutes on 2 cores) or ``--full`` (adds K = 64 and T = 1e5; the O(T K^3)
parallel strategies are skipped where one call would take minutes).
"""

import argparse
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from plait.kernels import FactoredSteps, Strategy, auto_strategy, chain_logsumexp

Array = jax.Array
LogMarginal = Callable[[Array, Array, Array], Array]


def emission_log_lik(means: Array, y: Array) -> Array:
    """``e[t, k] = log N(y_t | means_k, 1)``, shape (T, K)."""
    return -0.5 * (y[:, None] - means[None, :]) ** 2 - 0.5 * jnp.log(2 * jnp.pi)


def seq_log(logits: Array, means: Array, y: Array) -> Array:
    log_a = jax.nn.log_softmax(logits, axis=-1)
    e = emission_log_lik(means, y)
    k = logits.shape[0]

    def step(alpha: Array, e_t: Array) -> tuple[Array, None]:
        return jax.nn.logsumexp(alpha[:, None] + log_a, axis=0) + e_t, None

    alpha, _ = lax.scan(step, e[0] - jnp.log(k), e[1:])
    return jax.nn.logsumexp(alpha)


def seq_scaled(logits: Array, means: Array, y: Array) -> Array:
    a = jax.nn.softmax(logits, axis=-1)
    e = emission_log_lik(means, y)
    e_max = jnp.max(e, axis=-1, keepdims=True)
    lik = jnp.exp(e - e_max)
    k = logits.shape[0]

    def step(alpha: Array, lik_t: Array) -> tuple[Array, Array]:
        alpha = (alpha @ a) * lik_t
        c = jnp.sum(alpha)
        return alpha / c, jnp.log(c)

    alpha0 = lik[0] / k
    c0 = jnp.sum(alpha0)
    _, log_c = lax.scan(step, alpha0 / c0, lik[1:])
    return jnp.log(c0) + jnp.sum(log_c) + jnp.sum(e_max)


def tree_scaled(logits: Array, means: Array, y: Array) -> Array:
    a = jax.nn.softmax(logits, axis=-1)
    e = emission_log_lik(means, y)
    e_max = jnp.max(e, axis=-1, keepdims=True)
    lik = jnp.exp(e - e_max)
    k = logits.shape[0]
    mats = a[None, :, :] * lik[1:, None, :]
    log_scale = jnp.zeros(mats.shape[0], mats.dtype)
    while mats.shape[0] > 1:
        n = mats.shape[0]
        half = n // 2
        prod = mats[0 : 2 * half : 2] @ mats[1 : 2 * half : 2]
        c = jnp.max(prod, axis=(-2, -1))
        prod = prod / c[:, None, None]
        scale = log_scale[0 : 2 * half : 2] + log_scale[1 : 2 * half : 2] + jnp.log(c)
        if n % 2:
            prod = jnp.concatenate([prod, mats[-1:]])
            scale = jnp.concatenate([scale, log_scale[-1:]])
        mats, log_scale = prod, scale
    v = lik[0] / k
    return jnp.log(jnp.sum(v @ mats[0])) + log_scale[0] + jnp.sum(e_max)


def plait_kernel(strategy: Strategy, *, factored: bool = False) -> LogMarginal:
    """plait's kernel on dense ``(T-1, K, K)`` steps, or on `FactoredSteps`."""

    def log_marginal(logits: Array, means: Array, y: Array) -> Array:
        log_a = jax.nn.log_softmax(logits, axis=-1)
        e = emission_log_lik(means, y)
        init = e[0] - jnp.log(logits.shape[0])
        if factored:
            steps = FactoredSteps(log_a[None, :, :], e[1:])
            return chain_logsumexp(init, steps, strategy=strategy).log_normalizer
        dense = log_a[None, :, :] + e[1:, None, :]
        return chain_logsumexp(init, dense, strategy=strategy).log_normalizer

    return log_marginal


def ready(tree: object) -> None:
    for leaf in jax.tree.leaves(tree):
        leaf.block_until_ready()


def reference_float64(logits: np.ndarray, means: np.ndarray, y: np.ndarray) -> float:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(1, keepdims=True)
    a = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
    e = -0.5 * (y.astype(np.float64)[:, None] - means.astype(np.float64)[None, :]) ** 2
    e -= 0.5 * np.log(2 * np.pi)
    e_max = e.max(1, keepdims=True)
    lik = np.exp(e - e_max)
    alpha = lik[0] / logits.shape[0]
    total = float(e_max.sum())
    c = alpha.sum()
    alpha /= c
    total += np.log(c)
    for t in range(1, y.shape[0]):
        alpha = (alpha @ a) * lik[t]
        c = alpha.sum()
        alpha /= c
        total += np.log(c)
    return float(total)


def simulate(k: int, t: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    logits = rng.normal(size=(k, k)).astype(np.float32) + 2.0 * np.eye(k, dtype=np.float32)
    means = np.linspace(-3.0, 3.0, k).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    z = np.empty(t, np.int64)
    z[0] = rng.integers(k)
    u = rng.random(t)
    cum = np.cumsum(probs, axis=1)
    for i in range(1, t):
        z[i] = min(int(np.searchsorted(cum[z[i - 1]], u[i])), k - 1)
    y = (means[z] + rng.normal(size=t)).astype(np.float32)
    return logits, means, y


def run_cell(
    k: int, t: int, methods: dict[str, LogMarginal], repeats: int, rng: np.random.Generator
) -> dict[str, tuple[float, float, float]]:
    """{method: (compile s, median steady ms, value relative error)}."""
    logits, means, y = simulate(k, t, rng)
    ref = reference_float64(logits, means, y)
    args = (jnp.asarray(logits), jnp.asarray(means), jnp.asarray(y))
    compiled = {}
    out: dict[str, tuple[float, float, float]] = {}
    for name, fn in methods.items():
        f = jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))
        t0 = time.perf_counter()
        value, grads = f(*args)
        ready((value, grads))
        compile_s = time.perf_counter() - t0
        compiled[name] = f
        out[name] = (compile_s, 0.0, abs(float(value) - ref) / abs(ref))
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, f in compiled.items():
            t0 = time.perf_counter()
            ready(f(*args))
            times[name].append(time.perf_counter() - t0)
    for name in methods:
        c, _, err = out[name]
        out[name] = (c, 1e3 * statistics.median(times[name]), err)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="add K=64 and T=1e5")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    ks = [3, 16, 64] if args.full else [3, 16]
    ts = [1_000, 10_000, 100_000] if args.full else [1_000, 10_000]
    refs: dict[str, LogMarginal] = {
        "seq_log": seq_log,
        "seq_scaled": seq_scaled,
        "tree_scaled": tree_scaled,
    }
    ours = {
        "sequential": plait_kernel("sequential"),
        "seq_factored": plait_kernel("sequential", factored=True),
        "tree": plait_kernel("tree"),
        "associative": plait_kernel("associative"),
    }
    rng = np.random.default_rng(0)
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {jax.devices()[0]}")
    print("value+grad, steady-state median ms [compile s] (value rel. error vs float64)")
    print("ratio: plait kernel / best hand-written kernel in the same run\n")
    header = (
        f"{'K':>3} {'T':>7} | {'method':<12} {'ms':>9} {'compile':>8} {'rel err':>9} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for k in ks:
        for t in ts:
            methods: dict[str, LogMarginal] = dict(refs) | dict(ours)
            if k * k * k * t > 64**3 * 10_000:  # O(T K^3) forms: minutes a call
                for name in ("tree_scaled", "tree", "associative"):
                    methods.pop(name)
            repeats = args.repeats if k * k * t <= 16 * 16 * 10_000 else 3
            res = run_cell(k, t, methods, repeats, rng)
            best = min(res[name][1] for name in refs if name in res)
            for name, (comp, ms, err) in res.items():
                ratio = f"{ms / best:6.2f}" if name in ours else ""
                print(f"{k:>3} {t:>7} | {name:<12} {ms:9.2f} {comp:8.2f} {err:9.1e} {ratio:>6}")
            print(f"{k:>3} {t:>7} | auto picks {auto_strategy(t - 1, k)!r} on this backend")
            print("-" * len(header), flush=True)


if __name__ == "__main__":
    main()
