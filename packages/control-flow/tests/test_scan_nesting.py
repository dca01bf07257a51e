"""Plates inside the body, scans nested in scans, and scans inside plates."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.control_flow import scan as numpyro_scan

from plait import PlaitError, plate, sample
from plait.control_flow import scan
from plait.handlers import condition, replay, scope, seed, substitute, trace

T1, T2 = 3, 4


# -- plates inside the body ---------------------------------------------------------------
def plated_body(c: Any, x: Any) -> Any:
    with plate("p", 3):
        loc = sample("loc", dist.Normal(c, 1.0))
        y = sample("y", dist.Normal(loc, 1.0), obs=x)
    return c + 0.1, y


def test_plate_inside_body_promotes_value_shapes(log_joint: Any, unrolled: Any) -> None:
    xs = jnp.linspace(-1.0, 1.0, 5)  # one scalar observation per step, broadcast by the plate
    locs = jnp.arange(15.0).reshape(5, 3) / 10

    def model(scan_fn: Any) -> Any:
        return scan_fn(plated_body, jnp.zeros(()), xs)

    tr = trace(substitute(model, data={"loc": locs})).get_trace(scan)
    y = tr["y"]
    assert y.fn.batch_shape == (5, 3) and y.value.shape == (5, 1)
    assert y.fn.log_prob(y.value).shape == (5, 3)
    assert [f.name for f in y.cond_indep_stack] == ["p"]
    data = {f"t{t}/loc": locs[t] for t in range(5)}
    ref = trace(substitute(model, data=data)).get_trace(unrolled("t"))
    np.testing.assert_allclose(log_joint(tr), log_joint(ref), rtol=1e-6)


def test_multivariate_site_in_body_plate(log_joint: Any, unrolled: Any) -> None:
    def body(c: Any, x: Any) -> Any:
        with plate("q", 4):
            z = sample("z", dist.Normal(c, 1.0).to_event(1))
        return c + 1.0, z

    zs = jnp.arange(60.0).reshape(5, 4, 3) / 30

    def model(scan_fn: Any) -> Any:
        return scan_fn(body, jnp.zeros(3), None, length=5)

    tr = trace(substitute(model, data={"z": zs})).get_trace(scan)
    assert tr["z"].fn.batch_shape == (5, 4) and tr["z"].fn.event_shape == (3,)
    ref = trace(substitute(model, data={f"t{t}/z": zs[t] for t in range(5)})).get_trace(
        unrolled("t")
    )
    np.testing.assert_allclose(log_joint(tr), log_joint(ref), rtol=1e-6)


# -- nested scans ---------------------------------------------------------------------
def nested(scan_outer: Any = scan, scan_inner: Any = scan, init: Any = None) -> Any:
    def outer(c: Any, _: Any) -> Any:
        def inner(d: Any, _: Any) -> Any:
            z = sample("z", dist.Normal(d, 1.0))
            return z, z

        with scope(prefix="in"):
            d, zs = scan_inner(inner, c, None, length=T2)
        w = sample("w", dist.Normal(d, 1.0))
        return w, zs

    return scan_outer(outer, jnp.zeros(()) if init is None else init, None, length=T1)


def nested_numpyro() -> Any:
    def outer(c: Any, _: Any) -> Any:
        def inner(d: Any, _: Any) -> Any:
            z = numpyro.sample("z", dist.Normal(d, 1.0))
            return z, z

        with numpyro.handlers.scope(prefix="in"):
            d, zs = numpyro_scan(inner, c, None, length=T2)
        w = numpyro.sample("w", dist.Normal(d, 1.0))
        return w, zs

    return numpyro_scan(outer, jnp.zeros(()), None, length=T1)


def test_nested_scan_draws_equal_numpyro() -> None:
    ours = trace(seed(nested, rng_seed=5)).get_trace()
    theirs = numpyro.handlers.trace(numpyro.handlers.seed(nested_numpyro, rng_seed=5)).get_trace()
    assert ours["in/z"].value.shape == (T1, T2) and ours["w"].value.shape == (T1,)
    for name in ("in/z", "w"):
        np.testing.assert_array_equal(ours[name].value, theirs[name]["value"])


def nested_reference(Z: Any, W: Any) -> float:
    """log p(z, w) of the nested walk, in float64."""
    total, c = 0.0, 0.0
    for i in range(T1):
        d = c
        for j in range(T2):
            total += -0.5 * (Z[i, j] - d) ** 2 - 0.5 * np.log(2 * np.pi)
            d = Z[i, j]
        total += -0.5 * (W[i] - d) ** 2 - 0.5 * np.log(2 * np.pi)
        c = W[i]
    return float(total)


Z = np.arange(12.0).reshape(T1, T2) / 5
W = np.array([0.5, 1.5, -0.5])


@pytest.mark.parametrize("prefix", [None, "a"])
def test_nested_scan_substitution_and_log_density(prefix: str | None, log_joint: Any) -> None:
    model = nested if prefix is None else scope(nested, prefix=prefix)
    names = ("in/z", "w") if prefix is None else ("a/in/z", "a/w")
    data = {names[0]: jnp.asarray(Z), names[1]: jnp.asarray(W)}
    tr = trace(substitute(model, data=data)).get_trace()
    np.testing.assert_array_equal(tr[names[0]].value, Z.astype(np.float32))
    assert tr[names[0]].fn.batch_shape == (T1, T2)
    np.testing.assert_allclose(log_joint(tr), nested_reference(Z, W), rtol=1e-6)


def test_nested_scan_equals_unrolled_double_loop(log_joint: Any, unrolled: Any) -> None:
    data = {f"o{i}/in/i{j}/z": Z[i, j] for i in range(T1) for j in range(T2)}
    data.update({f"o{i}/w": W[i] for i in range(T1)})
    ref = trace(substitute(nested, data=data)).get_trace(unrolled("o"), unrolled("i"))
    ours = trace(substitute(nested, data={"in/z": Z, "w": W})).get_trace()
    np.testing.assert_allclose(log_joint(ours), log_joint(ref), rtol=1e-6)


def test_nested_scan_per_outer_step_values_and_condition() -> None:
    inner_only = jnp.arange(float(T2))  # shape (T2,): the same inner series every outer step
    tr = trace(seed(condition(nested, data={"in/z": inner_only}), rng_seed=0)).get_trace()
    assert tr["in/z"].is_observed
    np.testing.assert_array_equal(tr["in/z"].value, np.tile(np.arange(T2), (T1, 1)))


def test_nested_scan_shorter_outer_values_is_a_clear_error() -> None:
    with pytest.raises(PlaitError, match="forecasting past the data is only supported"):
        trace(seed(substitute(nested, data={"in/z": jnp.zeros((2, T2))}), 0)).get_trace()


def test_replay_through_nested_scan(log_joint: Any) -> None:
    guide_trace = trace(seed(nested, rng_seed=9)).get_trace()
    tr = trace(seed(replay(nested, trace=guide_trace), rng_seed=1)).get_trace()
    z, w = guide_trace["in/z"].value, guide_trace["w"].value
    for name in ("in/z", "w"):
        np.testing.assert_array_equal(tr[name].value, guide_trace[name].value)
    # the inner body itself was replayed: w_i is drawn around the replayed last z_i
    np.testing.assert_array_equal(tr["w"].fn.loc, z[:, -1])
    expected = nested_reference(np.asarray(z, np.float64), np.asarray(w, np.float64))
    np.testing.assert_allclose(log_joint(tr), expected, rtol=1e-5)


# -- scans inside plates -------------------------------------------------------------
N = 4


def series(y: Any = None, scan_fn: Any = scan) -> Any:
    def step(x: Any, y_t: Any) -> Any:
        x = sample("x", dist.Normal(x, 1.0))
        sample("y", dist.Normal(x, 0.5), obs=y_t)
        return x, x

    with plate("series", N):
        return scan_fn(step, jnp.zeros(N), y, length=5)


YS = jnp.arange(20.0).reshape(5, N) / 7
XS = jnp.cos(jnp.arange(20.0)).reshape(5, N)


def test_scan_inside_plate_is_vectorised_over_the_plate(log_joint: Any, unrolled: Any) -> None:
    tr = trace(seed(series, rng_seed=0)).get_trace(YS)
    x = tr["x"]
    assert x.value.shape == (5, N) and x.fn.batch_shape == (5, N)
    assert [f.name for f in x.cond_indep_stack] == ["series"]
    assert not np.allclose(x.value[:, 0], x.value[:, 1])  # independent series
    ours = trace(substitute(series, data={"x": XS})).get_trace(YS)
    ref = trace(substitute(series, data={f"t{t}/x": XS[t] for t in range(5)})).get_trace(
        YS, unrolled("t")
    )
    np.testing.assert_allclose(log_joint(ours), log_joint(ref), rtol=1e-6)


def test_scan_inside_subsampled_plate_scales_log_density(log_joint: Any, unrolled: Any) -> None:
    idx = jnp.array([1, 3])

    def model(y: Any, scan_fn: Any) -> Any:
        def step(x: Any, y_t: Any) -> Any:
            x = sample("x", dist.Normal(x, 1.0))
            sample("y", dist.Normal(x, 0.5), obs=y_t)
            return x, None

        with plate("series", 6, subsample_size=2):
            return scan_fn(step, jnp.zeros(2), y)

    y = YS[:, :2]
    data = {"series": idx, "x": XS[:, :2]}
    tr = trace(substitute(model, data=data)).get_trace(y, scan)
    assert tr["x"].scale == 3.0 and tr["y"].scale == 3.0
    ref_data = {"series": idx, **{f"t{t}/x": XS[t, :2] for t in range(5)}}
    ref = trace(substitute(model, data=ref_data)).get_trace(y, unrolled("t"))
    np.testing.assert_allclose(log_joint(tr), log_joint(ref), rtol=1e-6)


def test_scan_inside_plate_with_unbroadcast_init_names_the_plate() -> None:
    def step(x: Any, _: Any) -> Any:
        return sample("x", dist.Normal(x, 1.0)), None

    def model() -> Any:
        with plate("series", N):
            return scan(step, jnp.zeros(()), None, length=3)

    with pytest.raises(PlaitError, match=r"scan 'step'.*inside a plate, give init"):
        seed(model, rng_seed=0)()


def test_nested_scan_inside_plate(log_joint: Any) -> None:
    def model() -> Any:
        with plate("series", N):
            return nested(init=jnp.zeros(N))

    tr = trace(seed(model, rng_seed=0)).get_trace()
    assert tr["in/z"].value.shape == (T1, T2, N) and tr["w"].fn.batch_shape == (T1, N)
    assert [f.name for f in tr["in/z"].cond_indep_stack] == ["series"]
    # each series is the nested walk above: the log density splits into N columns
    Zn = np.asarray(tr["in/z"].value, np.float64)
    Wn = np.asarray(tr["w"].value, np.float64)
    expected = sum(nested_reference(Zn[..., k], Wn[:, k]) for k in range(N))
    np.testing.assert_allclose(log_joint(tr), expected, rtol=1e-5)


def test_jit_of_scan_in_plate(log_joint: Any) -> None:
    def density(x: Any) -> Any:
        return log_joint(trace(substitute(series, data={"x": x})).get_trace(YS))

    np.testing.assert_allclose(jax.jit(density)(XS), density(XS), rtol=1e-6)
