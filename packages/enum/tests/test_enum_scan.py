"""Enumerated ``scan``: log densities against brute force and NumPyro + funsor.

Every model is written once against a backend namespace ``B`` (plait or NumPyro) and
evaluated with both, the enumerated log density of ``enum(config_enumerate(model))``.
Brute force sums the joint over every discrete path in float64.
"""

from __future__ import annotations

import itertools
from functools import partial
from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.control_flow import scan as np_scan
from numpyro.contrib.funsor import config_enumerate as np_config
from numpyro.contrib.funsor import enum as np_enum
from numpyro.contrib.funsor import log_density as np_log_density
from numpyro.contrib.funsor import markov as np_markov
from numpyro.handlers import mask as np_mask
from numpyro.ops.indexing import Vindex

import plait
from plait.control_flow import scan as pl_scan
from plait.enum import config_enumerate, enum, log_density, markov
from plait.errors import PlaitError, SiteError
from plait.handlers import mask as pl_mask
from plait.handlers import scale, trace

NP = SimpleNamespace(
    sample=numpyro.sample, plate=numpyro.plate, scan=np_scan, markov=np_markov, mask=np_mask
)
PL = SimpleNamespace(
    sample=plait.sample, plate=plait.plate, scan=pl_scan, markov=markov, mask=pl_mask
)

RTOL = 1e-5


def numpyro_value(model: Any, args: tuple[Any, ...], fad: int | None = None) -> float:
    m = np_enum(np_config(partial(model, NP)), fad)
    return float(jax.jit(lambda *a: np_log_density(m, a, {}, {})[0])(*args))


def plait_value(model: Any, args: tuple[Any, ...], fad: int | None = None) -> float:
    m = enum(config_enumerate(partial(model, PL)), fad)
    # One compilation per model (eager evaluation compiles every small op).
    return float(jax.jit(lambda *a: log_density(m, a)[0])(*args))


def logsumexp(values: list[float]) -> float:
    return float(np.logaddexp.reduce(np.asarray(values, np.float64)))


def normal_lp(loc: float, y: float) -> float:
    return -0.5 * (y - loc) ** 2 - 0.5 * np.log(2 * np.pi)


def site_shapes(model: Any, *args: Any) -> dict[str, tuple[Any, Any]]:
    """Value and batch shapes of the sample sites of the enumerated model (traced only)."""
    found: dict[str, tuple[Any, Any]] = {}

    def run(*args: Any) -> None:
        tr = trace(enum(config_enumerate(model))).get_trace(*args)
        for name, site in tr.items():
            if site.type == "sample":
                found[name] = (tuple(site.value.shape), tuple(site.fn.batch_shape))

    jax.eval_shape(run, *args)
    return found


# -- one chain, history h -----------------------------------------------------------------
LOCS = np.array([-1.0, 1.0])


def history_probs(h: int) -> np.ndarray:
    logits = np.random.default_rng(h).normal(size=(2,) * (h + 1))
    return np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)


def hmm_history(B: Any, data: Any, h: int) -> None:
    p = jnp.asarray(history_probs(h), jnp.float32)

    def step(carry: Any, y: Any) -> Any:
        x = B.sample("x", dist.Categorical(p[carry]))
        B.sample("y", dist.Normal(jnp.asarray(LOCS, jnp.float32)[x], 1.0), obs=y)
        return (x, *carry[:-1]), None

    B.scan(step, (0,) * h, data, history=h)


def brute_history(data: np.ndarray, h: int) -> float:
    p = history_probs(h)
    total = []
    for path in itertools.product(range(2), repeat=len(data)):
        lp, carry = 0.0, (0,) * h
        for t, x in enumerate(path):
            lp += np.log(p[(*carry, x)]) + normal_lp(LOCS[x], data[t])
            carry = (x, *carry[:-1])
        total.append(lp)
    return logsumexp(total)


@pytest.mark.parametrize("T", [1, 2, 3, 4, 10, 11, 12, 13])
@pytest.mark.parametrize("h", [1, 2, 3])
def test_history_chain_matches_brute_force_and_numpyro(h: int, T: int) -> None:
    data = np.asarray(jax.random.normal(jax.random.key(T), (T,)))
    args = (jnp.asarray(data),)
    model = partial(lambda B, d, h: hmm_history(B, d, h), h=h)
    actual = plait_value(model, args)
    if T <= 11:
        np.testing.assert_allclose(actual, brute_history(data, h), rtol=RTOL)
    if T in (3, 12):
        np.testing.assert_allclose(actual, numpyro_value(model, args), rtol=RTOL)


def hmm_history0(B: Any, data: Any) -> None:
    probs = jnp.array([0.3, 0.7])

    def step(c: Any, y: Any) -> Any:
        x = B.sample("x", dist.Categorical(probs))
        B.sample("y", dist.Normal(jnp.asarray(LOCS, jnp.float32)[x] + c, 1.0), obs=y)
        return c + 0.1, None

    B.scan(step, 0.0, data, history=0)


@pytest.mark.parametrize("T", [1, 2, 3, 4, 10, 11, 12, 13])
def test_history_zero_is_a_plate_over_time(T: int) -> None:
    data = np.asarray(jax.random.normal(jax.random.key(T), (T,)))
    expected = sum(
        logsumexp(
            [np.log(p) + normal_lp(LOCS[x] + 0.1 * t, data[t]) for x, p in enumerate((0.3, 0.7))]
        )
        for t in range(T)
    )
    np.testing.assert_allclose(plait_value(hmm_history0, (jnp.asarray(data),)), expected, rtol=RTOL)
    shapes = site_shapes(partial(hmm_history0, PL), jnp.asarray(data))
    assert shapes["x"][0] == (T, 2)  # the time dim, then x's dim (history 0: no _PREV_x)


# -- the NumPyro test_funsor scenarios ----------------------------------------------------
PROBS_X = jnp.array([[0.8, 0.2], [0.1, 0.9]])
PROBS_W = jnp.array([[0.7, 0.3], [0.6, 0.4]])
INIT = jnp.array([0.6, 0.4])
LOC1 = jnp.array([-1.0, 1.0])
LOC2 = jnp.array([[-1.0, 1.0], [2.0, 3.0]])


def one_latent(B: Any, data: Any) -> Any:
    def step(x: Any, y: Any) -> Any:
        probs = INIT if x is None else PROBS_X[x]
        x = B.sample("x", dist.Categorical(probs))
        B.sample("y", dist.Normal(LOC1[x], 1), obs=y)
        return x, None

    return B.scan(step, None, data)[0]


def one_latent_markov(B: Any, data: Any) -> Any:
    x = None
    for i, y in B.markov(enumerate(data)):
        probs = INIT if x is None else PROBS_X[x]
        x = B.sample(f"x_{i}", dist.Categorical(probs))
        B.sample(f"y_{i}", dist.Normal(LOC1[x], 1), obs=y)
    return x


def two_latents(B: Any, data: Any) -> Any:
    def step(carry: Any, y: Any) -> Any:
        x, w = carry
        x = B.sample("x", dist.Categorical(PROBS_X[x]))
        w = B.sample("w", dist.Categorical(PROBS_W[w]))
        B.sample("y", dist.Normal(LOC2[w, x], 1), obs=y)
        return (x, w), x

    return B.scan(step, (0, 0), data)


def plate_inside(B: Any, data: Any) -> None:
    def step(x: Any, y: Any) -> Any:
        probs = INIT if x is None else PROBS_X[x]
        with B.plate("D", data.shape[1], dim=-1):
            x = B.sample("x", dist.Categorical(probs))
            B.sample("y", dist.Normal(LOC1[x], 1), obs=y)
        return x, None

    B.scan(step, None, data)


def separated_plates_same_dim(B: Any, d1: Any, d2: Any) -> None:
    def step(x: Any, y: Any) -> Any:
        probs = INIT if x is None else PROBS_X[x]
        x = B.sample("x", dist.Categorical(probs))
        with B.plate("D1", d1.shape[1], dim=-1):
            B.sample("y1", dist.Normal(LOC1[x], 1), obs=y[0])
        with B.plate("D2", d2.shape[1], dim=-1):
            B.sample("y2", dist.Normal(LOC1[x], 1), obs=y[1])
        return x, None

    B.scan(step, None, (d1, d2))


def separated_plate_discrete(B: Any, data: Any) -> None:
    def step(x: Any, y: Any) -> Any:
        x = B.sample("x", dist.Categorical(PROBS_X[x]))
        with B.plate("D", data.shape[1], dim=-1):
            w = B.sample("w", dist.Bernoulli(0.6))
            B.sample("y", dist.Normal(Vindex(LOC2)[x, w], 1), obs=y)
        return x, None

    B.scan(step, 0, data)


def discrete_outside(B: Any, data: Any) -> None:
    probs = jnp.array([[[0.8, 0.2], [0.1, 0.9]], [[0.7, 0.3], [0.6, 0.4]]])
    w = B.sample("w", dist.Bernoulli(0.6))

    def step(x: Any, y: Any) -> Any:
        x = B.sample("x", dist.Categorical(probs[w, x]))
        B.sample("y", dist.Normal(LOC1[x], 1), obs=y)
        return x, None

    B.scan(step, 0, data)


def two_scans(B: Any, data_x: Any, data_w: Any) -> None:
    def step(name: str, probs: Any, locs: Any, x: Any, y: Any) -> Any:
        x = B.sample(name, dist.Categorical(probs[x]))
        B.sample("y_" + name, dist.Normal(locs[x], 1), obs=y)
        return x, None

    B.scan(partial(step, "x", PROBS_X, LOC1), 0, data_x)
    B.scan(partial(step, "w", PROBS_W, jnp.array([2.0, 3.0])), 0, data_w)


def masked_sequences(B: Any, sequences: Any, lengths: Any) -> None:
    num_sequences, _, data_dim = sequences.shape
    probs_x = jnp.array([[0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.1, 0.3, 0.6]])
    probs_y = jnp.array([[0.1, 0.9, 0.3, 0.5], [0.6, 0.2, 0.4, 0.5], [0.5, 0.5, 0.8, 0.1]])

    def step(carry: Any, y: Any) -> Any:
        x_prev, t = carry
        with (
            B.plate("sequences", num_sequences, dim=-2),
            B.mask(mask=(t < lengths)[..., None]),
        ):
            x = B.sample("x", dist.Categorical(probs_x[x_prev]))
            with B.plate("tones", data_dim, dim=-1):
                B.sample("y", dist.Bernoulli(probs_y[x.squeeze(-1)]), obs=y)
        return (x, t + 1), None

    x_init = jnp.zeros((num_sequences, 1), dtype=jnp.int32)
    B.scan(step, (x_init, 0), jnp.swapaxes(sequences, 0, 1))


DATA = jax.random.normal(jax.random.key(0), (11,))
GRID = jax.random.normal(jax.random.key(1), (10, 7))
SEQUENCES = jax.random.bernoulli(jax.random.key(3), 0.5, (4, 6, 4)).astype(jnp.float32)

SCENARIOS = {
    "one_latent_T1": (one_latent, (DATA[:1],), None),
    "one_latent_T10": (one_latent, (DATA[:10],), None),
    "two_latents": (two_latents, (DATA,), None),
    "plate_inside": (plate_inside, (GRID[:, :3],), -2),
    "separated_plates_same_dim": (separated_plates_same_dim, (GRID[:, :3], GRID[:, 3:]), -2),
    "separated_plate_discrete": (separated_plate_discrete, (GRID[:, :3],), -2),
    "discrete_outside": (discrete_outside, (DATA[:10],), None),
    "two_scans": (two_scans, (DATA, DATA[:-1] + 1), None),
    "masked_sequences": (masked_sequences, (SEQUENCES, jnp.array([6, 3, 1, 5])), -3),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scan_log_density_matches_numpyro(scenario: str) -> None:
    model, args, fad = SCENARIOS[scenario]
    np.testing.assert_allclose(
        plait_value(model, args, fad), numpyro_value(model, args, fad), rtol=RTOL
    )


@pytest.mark.parametrize("T", [1, 10, 11])
def test_scan_matches_markov_loop(T: int) -> None:
    data = DATA[:T]
    np.testing.assert_allclose(
        plait_value(one_latent, (data,)), plait_value(one_latent_markov, (data,)), rtol=RTOL
    )


def test_scanned_sites_are_named_as_numpyro_names_them() -> None:
    shapes = site_shapes(partial(one_latent, PL), DATA[:6])
    assert list(shapes) == ["_PREV_x", "_PREV_y", "x", "y"]
    assert shapes["_PREV_x"] == ((2,), ())
    # (value, batch) shapes: the time dim, then x on dim -1 and _PREV_x on dim -2 (NumPyro
    # puts them the other way round; plait keeps the step's own variables rightmost).
    assert shapes["x"] == ((5, 1, 2), (5, 2, 1))
    assert shapes["y"] == ((5, 1), (5, 2))


def test_two_latents_returns_ys_of_every_step() -> None:
    _, ys = jax.eval_shape(enum(config_enumerate(partial(two_latents, PL))), DATA)
    assert ys.shape[0] == DATA.shape[0]


def reversed_chain(B: Any, data: Any, scale: Any) -> None:
    def step(x: Any, y: Any) -> Any:
        x = B.sample("x", dist.Categorical(PROBS_X[x]))
        B.sample("y", dist.Normal(LOC1[x] * y[1], 1), obs=y[0])
        return x, None

    B.scan(step, 0, (data, scale), reverse=True)


@pytest.mark.parametrize("T", [1, 2, 3, 7])
def test_reverse_scan_matches_brute_force(T: int) -> None:
    # NumPyro contracts the time axis of a reversed scan in the wrong order for T >= 3.
    data = np.asarray(jax.random.normal(jax.random.key(T), (T,)))
    scale = 0.3 * np.arange(T)
    probs = np.asarray(PROBS_X, np.float64)
    total = []
    for path in itertools.product(range(2), repeat=T):
        lp, prev = 0.0, 0
        for t in reversed(range(T)):
            lp += np.log(probs[prev, path[t]]) + normal_lp(LOCS[path[t]] * scale[t], data[t])
            prev = path[t]
        total.append(lp)
    actual = plait_value(reversed_chain, (jnp.asarray(data), jnp.asarray(scale, jnp.float32)))
    np.testing.assert_allclose(actual, logsumexp(total), rtol=RTOL)


def test_log_density_is_jittable_and_differentiable() -> None:
    data = DATA[:10]

    def value(locs: Any) -> Any:
        def model(data: Any) -> None:
            def step(x: Any, y: Any) -> Any:
                x = plait.sample("x", dist.Categorical(PROBS_X[x]))
                plait.sample("y", dist.Normal(locs[x], 1), obs=y)
                return x, None

            pl_scan(step, 0, data)

        return log_density(config_enumerate(model), (data,))[0]

    locs = jnp.array([-1.0, 1.0])
    eager = value(locs)  # eager and jitted runs agree
    jitted, grad = jax.jit(jax.value_and_grad(value))(locs)
    np.testing.assert_allclose(jitted, eager, rtol=RTOL)
    # The gradient of the marginal likelihood against the forward algorithm in float64.
    y = np.asarray(data, np.float64)
    probs = np.asarray(PROBS_X, np.float64)

    def forward(locs: np.ndarray) -> float:
        alpha = np.log(probs[0]) + normal_lp(locs, y[0])
        for t in range(1, len(y)):
            alpha = np.logaddexp.reduce(alpha[:, None] + np.log(probs), 0) + normal_lp(locs, y[t])
        return float(np.logaddexp.reduce(alpha))

    eps = 1e-6
    base = np.array([-1.0, 1.0])
    numeric = [
        (forward(base + eps * np.eye(2)[k]) - forward(base - eps * np.eye(2)[k])) / (2 * eps)
        for k in range(2)
    ]
    np.testing.assert_allclose(jitted, forward(base), rtol=RTOL)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4)


@pytest.mark.parametrize("strategy", ["sequential", "tree", "associative"])
def test_contraction_strategy_from_infer(strategy: str) -> None:
    data = DATA[:10]

    def model(data: Any) -> None:
        def step(x: Any, y: Any) -> Any:
            x = plait.sample(
                "x",
                dist.Categorical(PROBS_X[x]),
                infer={"enumerate": "parallel", "contraction": strategy},  # type: ignore[typeddict-item]
            )
            plait.sample("y", dist.Normal(LOC1[x], 1), obs=y)
            return x, None

        pl_scan(step, 0, data)

    expected = plait_value(lambda B, d: B.scan(lambda x, y: _step_default(B, x, y), 0, d), (data,))
    actual = jax.jit(lambda d: log_density(model, (d,))[0])(data)
    np.testing.assert_allclose(actual, expected, rtol=RTOL)


def _step_default(B: Any, x: Any, y: Any) -> Any:
    x = B.sample("x", dist.Categorical(PROBS_X[x]))
    B.sample("y", dist.Normal(LOC1[x], 1), obs=y)
    return x, None


def test_site_depending_on_the_last_carry_is_refused() -> None:
    def model(data: Any) -> None:
        x, _ = pl_scan(lambda x, y: _step_default(PL, x, y), 0, data)
        plait.sample("z", dist.Normal(LOC1[x], 1.0), obs=0.0)

    with pytest.raises(SiteError, match="site 'z' depends on the last carry"):
        log_density(config_enumerate(model), (DATA[:5],))


def test_carry_remembering_more_than_history_is_refused() -> None:
    def model(data: Any) -> None:
        def step(carry: Any, y: Any) -> Any:
            x_prev, x_prev_prev = carry
            x = plait.sample(
                "x", dist.Categorical(PROBS_X[x_prev] * 0.5 + PROBS_X[x_prev_prev] * 0.5)
            )
            plait.sample("y", dist.Normal(LOC1[x], 1), obs=y)
            return (x, x_prev), None

        pl_scan(step, (0, 0), data, history=1)

    with pytest.raises(PlaitError, match="history=1"):
        log_density(config_enumerate(model), (DATA[:6],))


def test_scale_outside_the_scan_scales_every_factor() -> None:
    # A handler outside changes the stacked sites: their factors are recomputed from them.
    data = np.asarray(DATA[:4])

    def model(data: Any) -> None:
        with scale(scale=0.5):
            pl_scan(lambda x, y: _step_default(PL, x, y), 0, data)

    probs = np.asarray(PROBS_X, np.float64)
    total = []
    for path in itertools.product(range(2), repeat=4):
        lp, prev = 0.0, 0
        for t, x in enumerate(path):
            lp += np.log(probs[prev, x]) + normal_lp(LOCS[x], data[t])
            prev = x
        total.append(0.5 * lp)
    actual = jax.jit(lambda d: log_density(config_enumerate(model), (d,))[0])(jnp.asarray(data))
    np.testing.assert_allclose(actual, logsumexp(total), rtol=RTOL)


def test_substituted_continuous_body_site_reaches_every_step() -> None:
    data = np.asarray(DATA[:6])
    shift = np.linspace(-1.0, 1.0, 6)

    def model(data: Any) -> None:
        def step(x: Any, y: Any) -> Any:
            s = plait.sample("s", dist.Normal(0.0, 1.0))
            x = plait.sample("x", dist.Categorical(PROBS_X[x]))
            plait.sample("y", dist.Normal(LOC1[x] + s, 1), obs=y)
            return x, None

        pl_scan(step, 0, data)

    probs = np.asarray(PROBS_X, np.float64)
    total = []
    for path in itertools.product(range(2), repeat=6):
        lp, prev = 0.0, 0
        for t, x in enumerate(path):
            lp += np.log(probs[prev, x]) + normal_lp(LOCS[x] + shift[t], data[t])
            prev = x
        total.append(lp)
    expected = logsumexp(total) + sum(normal_lp(0.0, s) for s in shift)
    value = jax.jit(lambda d, s: log_density(config_enumerate(model), (d,), params={"s": s})[0])(
        jnp.asarray(data), jnp.asarray(shift, jnp.float32)
    )
    np.testing.assert_allclose(value, expected, rtol=RTOL)


def test_plugin_hook_answers_for_an_enumerated_scan() -> None:
    from plait import hooks

    data = DATA[:10]
    model = config_enumerate(partial(one_latent, PL))
    value = jax.jit(lambda d: hooks.log_density(model, (d,), {}, {})[0])(data)  # type: ignore[index]
    np.testing.assert_allclose(value, plait_value(one_latent, (data,)), rtol=RTOL)


def test_scan_without_discrete_sites_under_enumeration_is_a_product_over_time() -> None:
    # z is enumerated outside; the scan's body has no discrete site (the plain runner
    # runs it) but depends on z.
    data = np.asarray(DATA[:5])

    def model(data: Any) -> None:
        z = plait.sample("z", dist.Bernoulli(0.3))

        def step(c: Any, y: Any) -> Any:
            plait.sample("y", dist.Normal(LOC1[z] + c, 1.0), obs=y)
            return c + 0.5, None

        pl_scan(step, 0.0, data)

    expected = logsumexp(
        [
            np.log(p) + sum(normal_lp(LOCS[z] + 0.5 * t, data[t]) for t in range(5))
            for z, p in enumerate((0.7, 0.3))
        ]
    )
    actual = jax.jit(lambda d: log_density(config_enumerate(model), (d,))[0])(jnp.asarray(data))
    np.testing.assert_allclose(actual, expected, rtol=RTOL)
