"""The enumerated HMM's contraction strategies on whatever backend JAX finds, and the
``auto`` thresholds that follow from them.

BENCHMARKS.md §1 and §4: value + grad of plait's enumerated ``scan`` HMM (K states, T
steps) for each contraction strategy (``infer={"contraction": ...}``: ``sequential``,
``tree``, ``associative``), beside the best hand-written kernel of ``benchmarks/hmm.py``
(``seq_log``, ``seq_scaled``, ``tree_scaled``, imported from there, timed by its
``run_cell``: first call apart, then the median of interleaved steady-state calls, and the
float32 error of value and gradient against a float64 reference). Then, for each K, the
smallest T from which a parallel strategy beats the sequential one, and the values to set
in ``plait.kernels.auto_strategy`` (``packages/core/src/plait/kernels/_chain.py``).

Sizes: K in {3, 16, 64}, T in {10^3, 10^4, 10^5} (about 3 minutes on an H100-class GPU);
``--quick`` K in {3, 16}, T in {10^3, 10^4} for a CPU (about 2 minutes on 2 cores).
Run ``python benchmarks/accelerator.py [--quick]`` (``hatch run bench:accelerator``).

plait-gaussian's Kalman forms (sequential and associative, in ``plait.kernels``) get the
same table once that package lands: see ``KALMAN_SUITES`` below.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from functools import partial
from typing import Any

import hmm  # benchmarks/hmm.py: the problem, the hand-written kernels and the timing
import jax
import numpyro.distributions as dist

import plait
from plait.control_flow import scan
from plait.enum import log_density
from plait.kernels import auto_strategy

STRATEGIES = ("sequential", "tree", "associative")
FULL_STATES, FULL_STEPS = (3, 16, 64), (1_000, 10_000, 100_000)
QUICK_STATES, QUICK_STEPS = (3, 16), (1_000, 10_000)


def plait_model(params: hmm.Params, y: jax.Array, strategy: str) -> None:
    """``benchmarks/hmm.py``'s model, its contraction strategy chosen."""
    logits, means = params
    trans = jax.nn.softmax(logits, -1)

    def step(x: Any, y_t: Any) -> Any:
        x = plait.sample(
            "x",
            dist.Categorical(trans[x]),
            infer={"enumerate": "parallel", "contraction": strategy},
        )
        plait.sample("y", dist.Normal(means[x], 1.0), obs=y_t)
        return x, None

    scan(step, 0, y)


def plait_value(params: hmm.Params, y: jax.Array, strategy: str) -> jax.Array:
    return log_density(plait_model, (params, y, strategy))[0]


# Registered in hmm.py's table, so that its run_cell times them beside its kernels.
# ("auto" is not timed apart: it compiles to the strategy auto_strategy names.)
for _strategy in STRATEGIES:
    hmm.IMPLS[f"plait {_strategy}"] = partial(plait_value, strategy=_strategy)


# -- plait-gaussian's Kalman forms ------------------------------------------------------
# plait-gaussian (another branch) adds sequential and associative Kalman kernels to
# plait.kernels. When it lands, register a suite here: name -> function (latent dim, T)
# -> {form name: (jitted value+grad, its arguments)}, timed and printed like the HMM
# cells, and derive its threshold the same way (`crossings`). Empty until then: this
# script must not depend on that branch.
KALMAN_SUITES: dict[str, Callable[[int, int], dict[str, tuple[Callable[..., Any], tuple[Any, ...]]]]] = {}


def cells(quick: bool) -> list[tuple[int, int]]:
    states, steps = (QUICK_STATES, QUICK_STEPS) if quick else (FULL_STATES, FULL_STEPS)
    return [(K, T) for K in states for T in steps]


def repeats_for(K: int, T: int, scale: float) -> int:
    """Many repeats where a call takes well under a millisecond (timer and scheduling
    noise), few where it takes seconds (the largest cells on a CPU)."""
    work = K * K * T
    base = 25 if work <= 10**5 else 11 if work <= 10**6 else 7 if work <= 10**7 else 3
    return max(2, round(base * scale))


def crossings(
    table: dict[tuple[int, int], dict[str, dict[str, float]]],
) -> dict[int, dict[str, float | None]]:
    """For each K, the T from which ``tree`` / ``associative`` beat ``sequential`` at
    every larger measured T; placed between the last losing T and the first winning one
    by interpolating log(time ratio) in log T. ``None``: it loses at the largest T."""
    out: dict[int, dict[str, float | None]] = {}
    for K in sorted({k for k, _ in table}):
        out[K] = {}
        for parallel in ("tree", "associative"):
            ratios = [
                (T, row[f"plait {parallel}"]["ms"] / row["plait sequential"]["ms"])
                for (k, T), row in sorted(table.items())
                if k == K and f"plait {parallel}" in row
            ]
            winning = 0
            while winning < len(ratios) and ratios[len(ratios) - 1 - winning][1] < 1.0:
                winning += 1
            if winning == 0:
                out[K][parallel] = None
            elif winning == len(ratios):
                out[K][parallel] = float(ratios[0][0])  # wins from the smallest T measured
            else:
                (t0, r0), (t1, r1) = ratios[-winning - 1], ratios[-winning]
                a, b = math.log(r0), math.log(r1)
                out[K][parallel] = math.exp(math.log(t0) + (math.log(t1) - math.log(t0)) * a / (a - b))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CPU sizes")
    parser.add_argument("--repeats", type=float, default=1.0, help="scale the repeats")
    args = parser.parse_args()
    backend = jax.default_backend()
    device = jax.devices()[0].device_kind
    print(f"jax {jax.__version__}, backend {backend} ({device}), {'quick' if args.quick else 'full'} sizes")
    names = [f"plait {s}" for s in STRATEGIES] + list(hmm.HAND)
    head = " ".join(f"{s:>11}" for s in STRATEGIES)
    print(
        f"{'K':>3} {'T':>7} | {head} | {'best hand':>10} {'(which)':>11} | "
        f"{'auto picks':>11} {'auto/best':>9} | {'par/seq':>7} | worst err (value, grad)"
    )
    table: dict[tuple[int, int], dict[str, dict[str, float]]] = {}
    for K, T in cells(args.quick):
        cell_names = list(names)
        if backend == "cpu" and K * K * K * T > 64**3 * 10_000:
            # O(T K^3) parallel forms: minutes a call on a CPU.
            cell_names = [n for n in cell_names if n not in ("plait tree", "plait associative", "tree_scaled")]
        r = hmm.run_cell(K, T, cell_names, repeats_for(K, T, args.repeats))
        picked = auto_strategy(T, K)
        table[K, T] = r
        best_name = min((n for n in hmm.HAND if n in r), key=lambda n: r[n]["ms"])
        best = r[best_name]["ms"]
        cols = " ".join(
            f"{r[f'plait {s}']['ms']:11.2f}" if f"plait {s}" in r else f"{'—':>11}"
            for s in STRATEGIES
        )
        parallel = min((r[n]["ms"] for n in ("plait tree", "plait associative") if n in r), default=math.nan)
        worst = max((r[n]["value_err"], r[n]["grad_err"]) for n in r if n.startswith("plait"))
        print(
            f"{K:>3} {T:>7} | {cols} | {best:10.2f} {best_name:>11} | "
            f"{picked:>11} {r[f'plait {picked}']['ms'] / best:9.2f} | "
            f"{parallel / r['plait sequential']['ms']:7.2f} | {worst[0]:.1e}, {worst[1]:.1e}",
            flush=True,
        )
    print("ms: median steady-state value+grad; par/seq: fastest parallel strategy / sequential.")
    compile_s = {s: max(r[f"plait {s}"]["compile"] for r in table.values() if f"plait {s}" in r) for s in STRATEGIES}
    print("slowest first call (trace + compile + run), s: " + ", ".join(f"{s} {v:.1f}" for s, v in compile_s.items()))

    print(f"\nKalman forms (plait-gaussian): {'not measured: not merged yet' if not KALMAN_SUITES else ''}")
    for name, suite in KALMAN_SUITES.items():
        print(f"  {name}: {sorted(suite(1, 1000))}")

    print(f"\n`auto` thresholds measured on {backend}:")
    for line in recommend(crossings(table), backend, min(t for _, t in table)):
        print(line)


def recommend(found: dict[int, dict[str, float | None]], backend: str, smallest: int) -> list[str]:
    """What to set in ``auto_strategy`` (``packages/core/src/plait/kernels/_chain.py``):
    today one rule for every K, ``_PARALLEL_MIN_STEPS``, from which accelerators take the
    tree (totals) or the associative scan (prefix messages) instead of the sequential
    recursion."""
    lines = []
    for K, by in found.items():
        parts = [
            f"{form} never" if v is None else f"{form} from T {'<=' if v == smallest else '~'} {v:,.0f}"
            for form, v in by.items()
        ]
        lines.append(f"  K = {K:>2}: " + "; ".join(parts))
    for form, use in (("tree", "totals (prefix=False)"), ("associative", "prefixes (prefix=True)")):
        wins = {K: by[form] for K, by in found.items()}
        if all(v is None for v in wins.values()):
            lines.append(f"  {use}: sequential at every measured size on {backend}.")
            continue
        # The parallel forms do K times more work: they win up to some K. Round the largest
        # crossing up to a power of two, so that auto never picks a form where it was slower.
        ks = sorted(wins)
        up_to = [K for i, K in enumerate(ks) if all(wins[k] is not None for k in ks[: i + 1])]
        threshold = 2 ** math.ceil(math.log2(max(v for k, v in wins.items() if k in up_to and v)))
        if len(up_to) == len(ks):
            lines.append(f"  {use}: {form} from num_steps >= {threshold} at every measured K")
        else:
            lines.append(
                f"  {use}: {form} from num_steps >= {threshold} while num_states <= {up_to[-1]}; "
                f"sequential for more states (auto_strategy must then use num_states)"
                if up_to
                else f"  {use}: {form} wins only at some K: {wins}"
            )
    sequential_everywhere = all(v is None for by in found.values() for v in by.values())
    if backend == "cpu":
        lines.append(
            "  set: nothing; auto's CPU rule (sequential) holds."
            if sequential_everywhere
            else "  set: a parallel form won on this CPU: give auto_strategy's CPU rule the "
            "thresholds above."
        )
    elif sequential_everywhere:
        lines.append(f"  set: auto_strategy returns 'sequential' on {backend!r} too.")
    else:
        lines.append(f"  set: _PARALLEL_MIN_STEPS (backend {backend!r}) to the num_steps above.")
    return lines


if __name__ == "__main__":
    main()
