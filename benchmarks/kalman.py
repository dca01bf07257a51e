"""Kalman kernels of `plait.kernels` against hand-written filters and dynamax.

The question: how fast (value + gradient) and how accurate in float32 are
`kalman_filter`'s strategies on a linear-Gaussian state-space model, compared with
the best hand-written JAX Kalman filter and with dynamax's filters?

Model: latent dim n, observed dim k = n, T steps; a random stable transition F
(spectral radius 0.95), transition noise S Sᵀ, a random emission matrix H, emission
noise U Uᵀ, observations simulated from the model. Timed:
``jax.jit(jax.value_and_grad(log_lik, argnums=(0, 1, 2)))`` (gradient with respect to
F, S and U), first call (compile + run) separately from the median of steady-state
calls, methods interleaved, every result ``block_until_ready``. Accuracy: relative
error of the float32 value and gradient (largest over F, S, U, relative norm)
against the textbook filter in float64.

References:
- textbook: the covariance-form filter (predict, Cholesky of the innovation
  covariance, gain by ``cho_solve``, ``P - K S Kᵀ`` symmetrised), in ``lax.scan``;
- scalar: for n = 1, the same filter in scalar arithmetic (no 1x1 linear algebra);
- dynamax_seq / dynamax_par: ``dynamax.linear_gaussian_ssm.lgssm_filter`` and
  ``parallel_lgssm_filter`` (skipped if dynamax is not installed).
plait: ``kalman_filter(..., strategy="sequential")`` (square-root filter) and, with
``--parallel``, ``"associative"`` (its value+grad compile takes a minute at T = 1e4
on 2 cores).

Run ``python benchmarks/kalman.py`` (n in {1, 4, 16}, T in {1e3, 1e4}; a few minutes
on 2 cores) or ``--full`` (adds T = 1e5 and the parallel forms).
"""

import argparse
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from plait.kernels import AffineGaussian, KalmanStrategy, kalman_filter

try:
    from dynamax.linear_gaussian_ssm import lgssm_filter, parallel_lgssm_filter
    from dynamax.linear_gaussian_ssm.inference import make_lgssm_params
except ImportError:  # the comparison is optional
    lgssm_filter = parallel_lgssm_filter = make_lgssm_params = None

Array = jax.Array
Data = tuple[Array, Array, Array, Array]  # m0, L0, H, y
LogLik = Callable[[Array, Array, Array], Array]  # (F, S, U) -> log p(y)


def textbook(data: Data) -> LogLik:
    m0, l0, h, y = data

    def log_lik(f: Array, s: Array, u: Array) -> Array:
        q, r = s @ s.T, u @ u.T
        k = y.shape[-1]

        def step(carry: tuple[Array, Array], y_t: Array) -> tuple[tuple[Array, Array], Array]:
            m, p = carry
            m, p = f @ m, f @ p @ f.T + q
            hp = h @ p
            sy = hp @ h.T + r
            chol = jnp.linalg.cholesky(sy)
            e = y_t - h @ m
            w = jax.scipy.linalg.solve_triangular(chol, e, lower=True)
            gain = jax.scipy.linalg.cho_solve((chol, True), hp).T
            m = m + gain @ e
            p = p - gain @ sy @ gain.T
            ll = -0.5 * w @ w - jnp.sum(jnp.log(jnp.diag(chol))) - 0.5 * k * jnp.log(2 * jnp.pi)
            return (m, 0.5 * (p + p.T)), ll

        _, lls = lax.scan(step, (m0, l0 @ l0.T), y)
        return jnp.sum(lls)

    return log_lik


def scalar(data: Data) -> LogLik:
    m0, l0, h, y = data

    def log_lik(f: Array, s: Array, u: Array) -> Array:
        a, q, c, r = f[0, 0], s[0, 0] ** 2, h[0, 0], u[0, 0] ** 2

        def step(carry: tuple[Array, Array], y_t: Array) -> tuple[tuple[Array, Array], Array]:
            m, p = carry
            m, p = a * m, a * a * p + q
            sy = c * c * p + r
            e = y_t[0] - c * m
            gain = p * c / sy
            ll = -0.5 * (e * e / sy + jnp.log(sy) + jnp.log(2 * jnp.pi))
            return (m + gain * e, p - gain * c * p), ll

        _, lls = lax.scan(step, (m0[0], l0[0, 0] ** 2), y)
        return jnp.sum(lls)

    return log_lik


def plait(strategy: KalmanStrategy) -> Callable[[Data], LogLik]:
    def make(data: Data) -> LogLik:
        m0, l0, h, y = data
        n, k = m0.shape[0], y.shape[-1]

        def log_lik(f: Array, s: Array, u: Array) -> Array:
            transition = AffineGaussian(f[None], jnp.zeros((1, n), f.dtype), s[None])
            emission = AffineGaussian(h[None], jnp.zeros((1, k), f.dtype), u[None])
            return kalman_filter(m0, l0, transition, emission, y, strategy=strategy).log_normalizer

        return log_lik

    return make


def dynamax(parallel: bool) -> Callable[[Data], LogLik]:
    def make(data: Data) -> LogLik:
        m0, l0, h, y = data
        run = parallel_lgssm_filter if parallel else lgssm_filter

        def log_lik(f: Array, s: Array, u: Array) -> Array:
            q = s @ s.T
            # dynamax observes its first state: give it x_1's prior.
            params = make_lgssm_params(
                initial_mean=f @ m0,
                initial_cov=f @ l0 @ l0.T @ f.T + q,
                dynamics_weights=f,
                dynamics_cov=q,
                emissions_weights=h,
                emissions_cov=u @ u.T,
            )
            return run(params, y).marginal_loglik

        return log_lik

    return make


def simulate(n: int, t: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    f = rng.normal(size=(n, n))
    f = 0.95 * f / np.max(np.abs(np.linalg.eigvals(f)))
    s = np.linalg.cholesky(0.1 * np.eye(n) + 0.02 * np.ones((n, n)))
    h = rng.normal(size=(n, n))
    u = np.linalg.cholesky(0.5 * np.eye(n))
    x, y = np.zeros(n), np.empty((t, n))
    noise = rng.normal(size=(t, 2, n))
    for i in range(t):
        x = f @ x + s @ noise[i, 0]
        y[i] = h @ x + u @ noise[i, 1]
    return np.zeros(n), np.eye(n), h, y, f, s, u


def ready(tree: object) -> None:
    for leaf in jax.tree.leaves(tree):
        leaf.block_until_ready()


def rel(a: object, b: object) -> float:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a64 - b64) / np.linalg.norm(b64))


def run_cell(
    n: int, t: int, methods: dict[str, Callable[[Data], LogLik]], repeats: int, rng: np.random.Generator
) -> dict[str, tuple[float, float, float, float]]:
    """{method: (compile s, median steady ms, value rel. error, gradient rel. error)}."""
    *data_np, f, s, u = simulate(n, t, rng)
    with jax.enable_x64(True):
        data64 = tuple(jnp.asarray(a, jnp.float64) for a in data_np)
        ref_fn = jax.jit(jax.value_and_grad(textbook(data64), argnums=(0, 1, 2)))  # type: ignore[arg-type]
        ref, ref_grad = ref_fn(*(jnp.asarray(a, jnp.float64) for a in (f, s, u)))
        ref = float(ref)
    data = tuple(jnp.asarray(a, jnp.float32) for a in data_np)
    args = tuple(jnp.asarray(a, jnp.float32) for a in (f, s, u))
    compiled = {}
    out: dict[str, tuple[float, float, float, float]] = {}
    for name, make in methods.items():
        fn = jax.jit(jax.value_and_grad(make(data), argnums=(0, 1, 2)))  # type: ignore[arg-type]
        t0 = time.perf_counter()
        value, grads = fn(*args)
        ready((value, grads))
        compile_s = time.perf_counter() - t0
        compiled[name] = fn
        grad_err = max(rel(g, r) for g, r in zip(grads, ref_grad, strict=True))
        out[name] = (compile_s, 0.0, abs(float(value) - ref) / abs(ref), grad_err)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in compiled.items():
            t0 = time.perf_counter()
            ready(fn(*args))
            times[name].append(time.perf_counter() - t0)
    for name in methods:
        c, _, err, gerr = out[name]
        out[name] = (c, 1e3 * statistics.median(times[name]), err, gerr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--full", action="store_true", help="add T=1e5 and the parallel forms")
    parser.add_argument("--parallel", action="store_true", help="time the parallel forms too")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    parallel = args.parallel or args.full
    ts = [1_000, 10_000, 100_000] if args.full else [1_000, 10_000]
    refs: dict[str, Callable[[Data], LogLik]] = {"textbook": textbook}
    if make_lgssm_params is not None:
        refs["dynamax_seq"] = dynamax(parallel=False)
        if parallel:
            refs["dynamax_par"] = dynamax(parallel=True)
    ours: dict[str, Callable[[Data], LogLik]] = {"sequential": plait("sequential")}
    if parallel:
        ours["associative"] = plait("associative")
    rng = np.random.default_rng(0)
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {jax.devices()[0]}")
    if make_lgssm_params is None:
        print("dynamax is not installed: its filters are skipped")
    print("value+grad, steady-state median ms [compile s]; float32 relative error of the value")
    print("and of the gradient against the float64 textbook filter; ratio: plait / best")
    print("hand-written kernel (textbook, scalar, dynamax) in the same run\n")
    header = (
        f"{'n':>3} {'T':>7} | {'method':<12} {'ms':>9} {'compile':>8} "
        f"{'value err':>9} {'grad err':>9} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for n in [1, 4, 16]:
        for t in ts:
            cell_refs = dict(refs)
            if n == 1:
                cell_refs["scalar"] = scalar
            methods = cell_refs | ours
            repeats = args.repeats if n * n * t <= 16 * 16 * 10_000 else 3
            res = run_cell(n, t, methods, repeats, rng)
            best = min(res[name][1] for name in cell_refs)
            for name, (comp, ms, err, gerr) in res.items():
                ratio = f"{ms / best:6.2f}" if name in ours else ""
                print(
                    f"{n:>3} {t:>7} | {name:<12} {ms:9.2f} {comp:8.2f} {err:9.1e} {gerr:9.1e} "
                    f"{ratio:>6}"
                )
            print("-" * len(header), flush=True)


if __name__ == "__main__":
    main()
