"""The Kalman kernels (`kalman_filter`, `kalman_smoother`, `kalman_sample`) against dense Gaussians.

Reference: every latent ``x_0..x_T`` and every observed ``y_t`` stacked into one
multivariate normal, built and conditioned in float64 NumPy/SciPy (`dense`). The
kernels run in float64 (``jax.enable_x64``) for the exact checks (rtol 1e-9) and in
float32 for the accuracy checks (value 1e-5, gradient 1e-4 relative). Statistical
checks of the sampler use fixed seeds and state their tolerance.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from plait.kernels import (
    AffineGaussian,
    KalmanStrategy,
    kalman_filter,
    kalman_sample,
    kalman_smoother,
)

STRATEGIES: list[KalmanStrategy] = ["sequential", "associative"]


class Problem(NamedTuple):
    m0: np.ndarray
    l0: np.ndarray
    f: np.ndarray
    c: np.ndarray
    s: np.ndarray
    h: np.ndarray
    d: np.ndarray
    u: np.ndarray
    y: np.ndarray
    mask: np.ndarray | None

    def args(self, dtype: Any = jnp.float64) -> tuple[Any, ...]:
        a = [jnp.asarray(x, dtype) for x in self[:9]]
        return a[0], a[1], AffineGaussian(a[2], a[3], a[4]), AffineGaussian(a[5], a[6], a[7]), a[8]

    @property
    def jmask(self) -> jax.Array | None:
        return None if self.mask is None else jnp.asarray(self.mask)


class Dense(NamedTuple):
    log_likelihood: float
    mean: np.ndarray  # (T+1, n) posterior means of x_0..x_T
    cov: np.ndarray  # ((T+1) n, (T+1) n) posterior covariance
    prior_cov: np.ndarray


def dense(p: Problem) -> Dense:
    """The joint Gaussian of ``x_0..x_T`` and the observed ``y_t``, conditioned, in float64."""
    t_len, k = p.y.shape
    n = p.m0.shape[0]

    def steps(a: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.asarray(a, np.float64), (t_len, *a.shape[1:]))

    f, c, s, h, d, u = map(steps, (p.f, p.c, p.s, p.h, p.d, p.u))
    size = (t_len + 1) * n
    # x = G ε + μ with ε standard normal: x_0 = m0 + L0 ε_0, x_{t+1} = F x_t + c + S ε_{t+1}.
    g = np.zeros((size, size))
    mu = np.zeros(size)
    g[:n, :n], mu[:n] = p.l0, p.m0
    for t in range(t_len):
        now, prev = slice((t + 1) * n, (t + 2) * n), slice(t * n, (t + 1) * n)
        g[now] = f[t] @ g[prev]
        g[now, now] += s[t]
        mu[now] = f[t] @ mu[prev] + c[t]
    sxx = g @ g.T
    rows = [t for t in range(t_len) if p.mask is None or p.mask[t]]
    hb = np.zeros((len(rows) * k, size))
    my = np.zeros(len(rows) * k)
    r = np.zeros((len(rows) * k,) * 2)
    yv = np.zeros(len(rows) * k)
    for i, t in enumerate(rows):
        q = slice(i * k, (i + 1) * k)
        hb[q, (t + 1) * n : (t + 2) * n] = h[t]
        r[q, q] = u[t] @ u[t].T
        my[q], yv[q] = d[t], p.y[t]
    my = hb @ mu + my
    syy = hb @ sxx @ hb.T + r
    sxy = sxx @ hb.T
    if not rows:
        return Dense(0.0, mu.reshape(t_len + 1, n), sxx, sxx)
    log_lik = float(multivariate_normal(my, syy).logpdf(yv))
    gain = np.linalg.solve(syy, sxy.T).T
    mean = mu + gain @ (yv - my)
    cov = sxx - gain @ sxy.T
    return Dense(log_lik, mean.reshape(t_len + 1, n), cov, sxx)


def block(cov: np.ndarray, i: int, n: int) -> np.ndarray:
    return cov[i * n : (i + 1) * n, i * n : (i + 1) * n]


def make(
    n: int,
    k: int,
    t_len: int,
    *,
    varying: bool = False,
    masked: bool = False,
    seed: int = 0,
) -> Problem:
    """A random stable chain; ``varying`` gives every step its own coefficients."""
    rng = np.random.default_rng(seed)
    tv = t_len if varying else 1

    def tril(size: int, lead: int, scale: float) -> np.ndarray:
        return scale * (np.tril(rng.normal(size=(lead, size, size)), -1) * 0.3 + np.eye(size))

    f = rng.normal(size=(tv, n, n))
    f = 0.9 * f / np.max(np.abs(np.linalg.eigvals(f)), axis=-1)[:, None, None]
    mask = None
    if masked:
        mask = rng.random(t_len) > 0.35
        mask[0] = False
    return Problem(
        m0=rng.normal(size=n),
        l0=tril(n, 1, 1.5)[0],
        f=f,
        c=rng.normal(size=(tv, n)) * 0.5,
        s=tril(n, tv, 0.7),
        h=rng.normal(size=(tv, k, n)),
        d=rng.normal(size=(tv, k)),
        u=tril(k, tv, 0.5),
        y=rng.normal(size=(t_len, k)) * 2.0,
        mask=mask,
    )


CASES = {
    "scalar": dict(n=1, k=1, t_len=7),
    "multivariate": dict(n=3, k=2, t_len=6),
    "partial": dict(n=4, k=1, t_len=6),
    "more_obs_than_states": dict(n=2, k=5, t_len=5),
    "time_varying": dict(n=3, k=2, t_len=6, varying=True),
    "masked": dict(n=2, k=2, t_len=8, masked=True),
    "varying_masked": dict(n=3, k=1, t_len=7, varying=True, masked=True),
    "one_step": dict(n=2, k=1, t_len=1),
}


# The associative form's compilation is slow on CPU (tens of seconds a shape on a busy
# machine), so it runs on the cases that exercise every branch of its elements.
ASSOCIATIVE_CASES = ("scalar", "more_obs_than_states", "time_varying", "varying_masked")
CASE_STRATEGIES = [
    pytest.param(case, strategy, id=f"{case}-{strategy}")
    for strategy in STRATEGIES
    for case in CASES
    if strategy == "sequential" or case in ASSOCIATIVE_CASES
]


def problem_of(case: str) -> Problem:
    return make(**CASES[case], seed=len(case))  # type: ignore[arg-type]


FILTER = jax.jit(kalman_filter, static_argnames="strategy")
SMOOTHER = jax.jit(kalman_smoother, static_argnames="strategy")


@pytest.mark.parametrize(("case", "strategy"), CASE_STRATEGIES)
def test_filter_and_smoother_give_the_dense_marginal_and_posteriors(
    case: str, strategy: KalmanStrategy
) -> None:
    """log p(y), every filtering distribution and every smoothed marginal, in float64."""
    problem = problem_of(case)
    ref = dense(problem)
    n, t_len = problem.m0.shape[0], problem.y.shape[0]
    with jax.enable_x64(True):
        result = FILTER(*problem.args(), mask=problem.jmask, strategy=strategy)
        post = SMOOTHER(*problem.args(), mask=problem.jmask, strategy=strategy)
    assert result.log_normalizer.dtype == jnp.float64
    np.testing.assert_allclose(float(result.log_normalizer), ref.log_likelihood, rtol=1e-9)
    np.testing.assert_allclose(float(post.log_normalizer), ref.log_likelihood, rtol=1e-9)
    # Filtering at t is the posterior of x_{t+1} in the chain cut after step t.
    for t in range(t_len):
        upto = Problem(
            *problem[:2],
            *(a[: t + 1] if a.shape[0] > 1 else a for a in problem[2:9]),
            None if problem.mask is None else problem.mask[: t + 1],
        )
        cut = dense(upto)
        np.testing.assert_allclose(result.filtered_means[t], cut.mean[t + 1], rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(
            result.filtered_covariances[t], block(cut.cov, t + 1, n), rtol=1e-9, atol=1e-10
        )
    np.testing.assert_allclose(post.initial_mean, ref.mean[0], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(post.initial_covariance, block(ref.cov, 0, n), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(post.smoothed_means, ref.mean[1:], rtol=1e-9, atol=1e-10)
    covs = np.stack([block(ref.cov, t + 1, n) for t in range(t_len)])
    np.testing.assert_allclose(post.smoothed_covariances, covs, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize(("case", "strategy"), CASE_STRATEGIES)
def test_float32_log_normalizer_matches_the_dense_marginal(
    case: str, strategy: KalmanStrategy
) -> None:
    problem = problem_of(case)
    result = FILTER(*problem.args(jnp.float32), mask=problem.jmask, strategy=strategy)
    assert result.log_normalizer.dtype == jnp.float32
    np.testing.assert_allclose(
        float(result.log_normalizer), dense(problem).log_likelihood, rtol=2e-6
    )


def _unpack(flat: Any, p: Problem) -> tuple[Any, ...]:
    """Rebuild the kernel arguments from a flat float64 vector (for finite differences)."""
    out, i = [], 0
    for a in p[:9]:
        out.append(flat[i : i + a.size].reshape(a.shape))
        i += a.size
    return out[0], out[1], AffineGaussian(*out[2:5]), AffineGaussian(*out[5:8]), out[8]


@pytest.mark.parametrize(
    ("case", "strategy"),
    [
        ("multivariate", "sequential"),
        ("varying_masked", "sequential"),
        ("varying_masked", "associative"),
    ],
)
def test_gradient_matches_finite_differences(case: str, strategy: KalmanStrategy) -> None:
    p = make(**CASES[case], seed=3)  # type: ignore[arg-type]
    flat0 = np.concatenate([np.ravel(a) for a in p[:9]])

    def reference(flat: np.ndarray) -> float:
        parts = _unpack(flat, p)
        tr, em = parts[2], parts[3]
        return dense(Problem(parts[0], parts[1], *tr, *em, parts[4], p.mask)).log_likelihood

    with jax.enable_x64(True):

        def value(flat: jax.Array) -> jax.Array:
            return kalman_filter(*_unpack(flat, p), mask=p.jmask, strategy=strategy).log_normalizer

        grad = np.asarray(jax.jit(jax.grad(value))(jnp.asarray(flat0)))
    rng = np.random.default_rng(1)
    eps = 1e-5
    for _ in range(6):
        v = rng.normal(size=flat0.shape)
        fd = (reference(flat0 + eps * v) - reference(flat0 - eps * v)) / (2 * eps)
        np.testing.assert_allclose(grad @ v, fd, rtol=1e-6, atol=1e-7)


def test_masked_observations_may_be_nan_and_get_zero_gradient() -> None:
    p = make(2, 2, 8, masked=True, seed=5)
    assert p.mask is not None
    y = p.y.copy()
    y[~p.mask] = np.nan
    args = list(p.args(jnp.float32))

    def value(obs: jax.Array) -> jax.Array:
        return kalman_filter(*args[:4], obs, mask=p.jmask).log_normalizer

    total, grad = jax.value_and_grad(value)(jnp.asarray(y, jnp.float32))
    np.testing.assert_allclose(float(total), dense(p).log_likelihood, rtol=2e-6)
    assert np.all(np.isfinite(grad))
    assert np.all(np.asarray(grad)[~p.mask] == 0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_batch_dims_broadcast_and_match_each_chain(strategy: KalmanStrategy) -> None:
    # A (2, 3) batch: per-chain observations and masks, init mean batched over the
    # first axis, emission shared, transition batched over the second.
    n, k, t_len = 2, 2, 5
    chains = [[make(n, k, t_len, masked=True, seed=10 * i + j) for j in range(3)] for i in range(2)]
    base = chains[0][0]
    m0 = np.stack([chains[i][0].m0 for i in range(2)])[:, None, :]  # (2, 1, n)
    f = np.stack([chains[0][j].f for j in range(3)])  # (3, 1, n, n)
    y = np.stack([np.stack([chains[i][j].y for j in range(3)]) for i in range(2)])
    mask = np.stack([np.stack([chains[i][j].mask for j in range(3)]) for i in range(2)])
    with jax.enable_x64(True):
        post = SMOOTHER(
            jnp.asarray(m0),
            jnp.asarray(base.l0),
            AffineGaussian(jnp.asarray(f), jnp.asarray(base.c), jnp.asarray(base.s)),
            AffineGaussian(jnp.asarray(base.h), jnp.asarray(base.d), jnp.asarray(base.u)),
            jnp.asarray(y),
            mask=jnp.asarray(mask),
            strategy=strategy,
        )
    assert post.log_normalizer.shape == (2, 3)
    assert post.smoothed_covariances.shape == (2, 3, t_len, n, n)
    for i in range(2):
        for j in range(3):
            p = base._replace(m0=m0[i, 0], f=f[j], y=y[i, j], mask=mask[i, j])
            ref = dense(p)
            np.testing.assert_allclose(
                float(post.log_normalizer[i, j]), ref.log_likelihood, rtol=1e-9
            )
            np.testing.assert_allclose(
                post.smoothed_means[i, j], ref.mean[1:], rtol=1e-8, atol=1e-10
            )


def _textbook_log_likelihood(p: Problem) -> Callable[..., jax.Array]:
    """An independent reference: the covariance-form Kalman filter (shared coefficients)."""
    m0, l0 = jnp.asarray(p.m0), jnp.asarray(p.l0)
    h, d, y = jnp.asarray(p.h[0]), jnp.asarray(p.d[0]), jnp.asarray(p.y)

    def total(f: jax.Array, s: jax.Array, u: jax.Array) -> jax.Array:
        q, r = s @ s.T, u @ u.T

        def step(carry: tuple[jax.Array, jax.Array], y_t: jax.Array) -> Any:
            m, cov = carry
            m, cov = f @ m, f @ cov @ f.T + q
            sy = h @ cov @ h.T + r
            e = y_t - h @ m - d
            gain = jnp.linalg.solve(sy, h @ cov).T
            log_lik = jax.scipy.stats.multivariate_normal.logpdf(e, jnp.zeros_like(e), sy)
            cov = cov - gain @ sy @ gain.T
            return (m + gain @ e, 0.5 * (cov + cov.T)), log_lik

        _, log_liks = jax.lax.scan(step, (m0, l0 @ l0.T), y)
        return jnp.sum(log_liks)

    return total


def _rel(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_float32_accuracy_at_one_hundred_thousand_steps() -> None:
    """Value within 1e-5 and gradient within 1e-4 (relative) of a float64 textbook filter.

    Sequential only: the associative form unrolls 2 log2 T levels, whose value+grad
    compilation takes a minute on CPU at this length; benchmarks/kalman.py measures
    its accuracy there (and the finite-difference test checks its gradient).
    """
    strategy: KalmanStrategy = "sequential"
    t_len = 100_000
    p = make(2, 1, 1, seed=7)
    rng = np.random.default_rng(7)
    x, ys = np.zeros(2), np.empty((t_len, 1))
    for t in range(t_len):  # simulate, so that the observations fit the model
        x = p.f[0] @ x + p.s[0] @ rng.normal(size=2)
        ys[t] = p.h[0] @ x + p.d[0] + p.u[0] @ rng.normal(size=1)
    p = p._replace(c=np.zeros_like(p.c), y=ys)
    with jax.enable_x64(True):
        args64 = [jnp.asarray(a) for a in (p.f[0], p.s[0], p.u[0])]
        ref, ref_grad = jax.jit(jax.value_and_grad(_textbook_log_likelihood(p), argnums=(0, 1, 2)))(
            *args64
        )
    m0, l0, tr, em, y = p.args(jnp.float32)

    def value(f: jax.Array, s: jax.Array, u: jax.Array) -> jax.Array:
        transition = AffineGaussian(f[None], tr.offset, s[None])
        emission = AffineGaussian(em.matrix, em.offset, u[None])
        return kalman_filter(m0, l0, transition, emission, y, strategy=strategy).log_normalizer

    args32 = [jnp.asarray(a, jnp.float32) for a in (p.f[0], p.s[0], p.u[0])]
    total, grad = jax.jit(jax.value_and_grad(value, argnums=(0, 1, 2)))(*args32)
    assert abs(float(total) - float(ref)) / abs(float(ref)) < 1e-5
    for g, r in zip(grad, ref_grad, strict=True):
        assert _rel(g, r) < 1e-4


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_samples_have_the_dense_posterior_moments(strategy: KalmanStrategy) -> None:
    """20 000 draws: each mean within 5 standard errors, each covariance within 5 (+1e-3)."""
    p = make(2, 1, 5, varying=True, masked=True, seed=11)
    ref = dense(p)
    num = 20_000
    keys = jax.random.split(jax.random.key(0), num)
    m0, l0, tr, em, y = p.args(jnp.float32)

    def draw(key: jax.Array) -> jax.Array:
        path = kalman_sample(key, m0, l0, tr, em, y, mask=p.jmask, strategy=strategy)
        return jnp.concatenate([path.initial_state[None], path.states]).reshape(-1)

    xs = np.asarray(jax.jit(jax.vmap(draw))(keys), np.float64)
    mean, cov = ref.mean.reshape(-1), ref.cov
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(xs.mean(0) - mean) < 5 * sd / np.sqrt(num))
    se = np.sqrt((np.outer(sd**2, sd**2) + cov**2) / num)
    assert np.all(np.abs(np.cov(xs.T) - cov) < 5 * se + 1e-3)


def test_strategies_draw_the_same_path_for_the_same_key() -> None:
    p = make(3, 2, 9, varying=True, masked=True, seed=2)
    sample = jax.jit(kalman_sample, static_argnames="strategy")
    with jax.enable_x64(True):
        paths = [sample(jax.random.key(4), *p.args(), mask=p.jmask, strategy=s) for s in STRATEGIES]
    np.testing.assert_allclose(paths[0].states, paths[1].states, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(
        paths[0].initial_state, paths[1].initial_state, rtol=1e-9, atol=1e-10
    )


def test_batched_samples_are_independent_draws_of_each_chain() -> None:
    p = make(1, 1, 4, seed=8)
    y = np.stack([p.y, p.y + 3.0])  # two chains
    m0, l0, tr, em, _ = p.args(jnp.float32)
    path = kalman_sample(jax.random.key(1), m0, l0, tr, em, jnp.asarray(y, jnp.float32))
    assert path.states.shape == (2, 4, 1)
    assert path.initial_state.shape == (2, 1)
    for i in range(2):
        np.testing.assert_allclose(
            float(path.log_normalizer[i]), dense(p._replace(y=y[i])).log_likelihood, rtol=2e-6
        )


def test_zero_steps_give_the_prior() -> None:
    p = make(2, 1, 3, seed=1)
    m0, l0, tr, em, _ = p.args(jnp.float32)
    empty = jnp.zeros((0, 1), jnp.float32)
    assert float(kalman_filter(m0, l0, tr, em, empty).log_normalizer) == 0.0
    post = kalman_smoother(m0, l0, tr, em, empty)
    np.testing.assert_allclose(post.initial_covariance, p.l0 @ p.l0.T, rtol=1e-6)
    assert kalman_sample(jax.random.key(0), m0, l0, tr, em, empty).states.shape == (0, 2)


def test_auto_is_sequential_on_cpu() -> None:
    p = make(2, 2, 6, seed=4)
    auto = kalman_filter(*p.args(jnp.float32), strategy="auto")
    seq = kalman_filter(*p.args(jnp.float32), strategy="sequential")
    assert float(auto.log_normalizer) == float(seq.log_normalizer)


def test_dynamax_marginal_log_likelihood_agrees() -> None:
    lgssm = pytest.importorskip("dynamax.linear_gaussian_ssm")
    p = make(3, 2, 12, seed=6)
    f, s, h, d, u = p.f[0], p.s[0], p.h[0], p.d[0], p.u[0]
    # dynamax observes its first state: give it x_1's prior, N(F m0 + c, F P0 Fᵀ + Q).
    with jax.enable_x64(True):
        params = lgssm.inference.make_lgssm_params(
            initial_mean=jnp.asarray(f @ p.m0 + p.c[0]),
            initial_cov=jnp.asarray(f @ p.l0 @ p.l0.T @ f.T + s @ s.T),
            dynamics_weights=jnp.asarray(f),
            dynamics_cov=jnp.asarray(s @ s.T),
            emissions_weights=jnp.asarray(h),
            emissions_cov=jnp.asarray(u @ u.T),
            dynamics_bias=jnp.asarray(p.c[0]),
            emissions_bias=jnp.asarray(d),
        )
        theirs = lgssm.lgssm_filter(params, jnp.asarray(p.y)).marginal_loglik
        ours = kalman_filter(*p.args()).log_normalizer
    np.testing.assert_allclose(float(ours), float(theirs), rtol=1e-9)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda a: (*a[:4], a[4][:, :1]), ValueError, r"emission.matrix has shape \(1, 2, 2\)"),
        (lambda a: (a[0][:1], *a[1:]), ValueError, "init_scale_tril has shape"),
        (
            lambda a: (*a[:2], a[2]._replace(offset=jnp.zeros((3, 2), jnp.float32)), *a[3:]),
            ValueError,
            "transition.offset",
        ),
        (lambda a: (a[0].astype(jnp.float64), *a[1:]), TypeError, "one floating dtype"),
        (lambda a: (*a[:2], (1, 2, 3), *a[3:]), TypeError, "AffineGaussian"),
    ],
)
def test_bad_inputs_are_explained(change: Callable[..., Any], error: type, match: str) -> None:
    p = make(2, 2, 6, seed=0)
    with jax.enable_x64(True), pytest.raises(error, match=match):
        args = change(p.args(jnp.float32))
        kalman_filter(*args)


def test_unknown_strategy_and_bad_mask_are_refused() -> None:
    p = make(2, 2, 6, seed=0)
    with pytest.raises(ValueError, match="no tree contraction"):
        kalman_filter(*p.args(jnp.float32), strategy="tree")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="mask must be a boolean"):
        kalman_filter(*p.args(jnp.float32), mask=jnp.ones(6))
