"""``scan`` under each handler, checked against the loop unrolled in Python."""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.control_flow import scan as numpyro_scan

from plait import SiteError, deterministic, param, sample
from plait.control_flow import scan
from plait.handlers import (
    LocScaleReparam,
    block,
    condition,
    do,
    infer_config,
    lift,
    mask,
    reparam,
    replay,
    scale,
    scope,
    seed,
    substitute,
    trace,
    uncondition,
)

T = 5
Y = jnp.array([0.5, -0.3, 1.2, 0.7, -1.0])
X = jnp.array([0.2, -0.1, 0.9, 0.4, -0.6])


def hmm(y: Any = None, scan_fn: Any = scan, sample_fn: Any = sample) -> Any:
    def transition(x_prev: Any, y_curr: Any) -> Any:
        x_curr = sample_fn("x", dist.Normal(x_prev, 1.0))
        y_curr = sample_fn("y", dist.Normal(x_curr, 0.5), obs=y_curr)
        return x_curr, (x_curr, y_curr)

    return scan_fn(transition, jnp.zeros(()), y, length=T)


# -- substitute ---------------------------------------------------------------------------
def test_substitute_full_length_values(log_joint: Any, unrolled: Any, per_step: Any) -> None:
    ours = trace(substitute(hmm, data={"x": X})).get_trace(Y)
    theirs = trace(substitute(hmm, data=per_step({"x": X}, "t", T))).get_trace(Y, unrolled("t"))
    np.testing.assert_array_equal(ours["x"].value, X)
    np.testing.assert_allclose(log_joint(ours), log_joint(theirs), rtol=1e-6)


def test_substitute_per_step_value_is_used_every_step() -> None:
    tr = trace(substitute(hmm, data={"x": 0.25})).get_trace(Y)
    np.testing.assert_array_equal(tr["x"].value, np.full(T, 0.25))


def test_substitute_shorter_values_forecasts_like_numpyro() -> None:
    ours = trace(seed(substitute(hmm, data={"x": X[:3]}), rng_seed=2)).get_trace()
    theirs = numpyro.handlers.trace(
        numpyro.handlers.seed(numpyro.handlers.substitute(hmm, data={"x": X[:3]}), rng_seed=2)
    ).get_trace(scan_fn=numpyro_scan, sample_fn=numpyro.sample)
    np.testing.assert_array_equal(ours["x"].value[:3], X[:3])
    np.testing.assert_array_equal(ours["x"].value, theirs["x"]["value"])


def test_forecasting_without_a_key_is_a_clear_error() -> None:
    with pytest.raises(SiteError, match=r"site 'x' inside scan 'transition' got fewer values"):
        trace(substitute(hmm, data={"x": X[:3]})).get_trace(Y)


def test_substitute_longer_values_is_a_clear_error() -> None:
    with pytest.raises(
        SiteError, match=r"site 'x' inside scan 'transition' got 7 values.*only 5 steps"
    ):
        trace(substitute(hmm, data={"x": jnp.zeros(7)})).get_trace(Y)


def test_substitute_with_too_many_dims_is_a_clear_error() -> None:
    with pytest.raises(SiteError, match=re.escape("expected (5,) (stacked over time)")):
        trace(substitute(hmm, data={"x": jnp.zeros((5, 2))})).get_trace(Y)


def test_substitute_fn_reaches_into_the_body() -> None:
    def values(msg: Any) -> Any:
        return X if msg.name == "x" else None

    tr = trace(substitute(hmm, substitute_fn=values)).get_trace(Y)
    np.testing.assert_array_equal(tr["x"].value, X)


def body_with_param_and_deterministic(c: Any, x: Any) -> Any:
    w = param("w", jnp.ones(()))
    d = deterministic("d", c * w)
    z = sample("z", dist.Normal(d, 1.0), obs=x)
    return c + 1.0, (w, d, z)


def test_params_and_deterministics_inside_the_body_are_substitutable() -> None:
    def model() -> Any:
        return scan(body_with_param_and_deterministic, jnp.zeros(()), Y)

    ws = jnp.arange(1.0, 6.0)
    tr = trace(substitute(model, data={"w": ws})).get_trace()
    np.testing.assert_array_equal(tr["w"].value, ws)
    np.testing.assert_array_equal(tr["d"].value, jnp.arange(5.0) * ws)
    tr = trace(substitute(model, data={"w": 2.0, "d": jnp.full(5, -3.0)})).get_trace()
    np.testing.assert_array_equal(tr["w"].value, np.full(5, 2.0))
    np.testing.assert_array_equal(tr["d"].value, np.full(5, -3.0))
    np.testing.assert_array_equal(tr["z"].fn.loc, np.full(5, -3.0))


def test_scoped_names_match_inside_the_body(log_joint: Any) -> None:
    scoped = scope(hmm, prefix="a")
    tr = trace(substitute(scoped, data={"a/x": X})).get_trace(Y)
    assert set(tr) == {"a/x", "a/y"}
    np.testing.assert_array_equal(tr["a/x"].value, X)
    # the unscoped name is not the site's name where substitute stands (NumPyro applies it)
    with pytest.raises(SiteError, match="needs a random key"):
        trace(substitute(scoped, data={"x": X})).get_trace(Y)
    inner = trace(scope(substitute(hmm, data={"x": X}), prefix="a")).get_trace(Y)
    np.testing.assert_allclose(log_joint(inner), log_joint(tr), rtol=1e-6)


# -- condition and replay -----------------------------------------------------------------
def test_condition_observes_body_sites(log_joint: Any, unrolled: Any, per_step: Any) -> None:
    data = {"x": X, "y": Y}
    ours = trace(condition(hmm, data=data)).get_trace()
    theirs = trace(condition(hmm, data=per_step(data, "t", T))).get_trace(None, unrolled("t"))
    assert ours["x"].is_observed and ours["y"].is_observed
    np.testing.assert_array_equal(ours["y"].value, Y)
    np.testing.assert_allclose(log_joint(ours), log_joint(theirs), rtol=1e-6)


def guide(y: Any = None) -> Any:
    def step(c: Any, t: Any) -> Any:
        x = sample("x", dist.Normal(0.1 * t, 0.3))
        return c, x

    return scan(step, jnp.zeros(()), jnp.arange(float(T)))


def test_replay_of_a_guide_trace_through_scan(log_joint: Any, unrolled: Any) -> None:
    guide_trace = trace(seed(guide, rng_seed=4)).get_trace()
    x = guide_trace["x"].value
    ours = trace(replay(hmm, trace=guide_trace)).get_trace(Y)
    np.testing.assert_array_equal(ours["x"].value, x)
    theirs = trace(substitute(hmm, data={f"t{t}/x": x[t] for t in range(T)})).get_trace(
        Y, unrolled("t")
    )
    np.testing.assert_allclose(log_joint(ours), log_joint(theirs), rtol=1e-6)


def test_elbo_style_replay_under_jit(log_joint: Any) -> None:
    def elbo(key: Any) -> Any:
        guide_trace = trace(seed(guide, rng_seed=key)).get_trace()
        model_trace = trace(replay(hmm, trace=guide_trace)).get_trace(Y)
        return log_joint(model_trace) - log_joint(guide_trace)

    key = jax.random.key(1)
    np.testing.assert_allclose(jax.jit(elbo)(key), elbo(key), rtol=1e-6)


# -- handlers that act on the stacked sites ---------------------------------------------
def test_mask_and_scale_outside_act_on_stacked_sites(
    log_joint: Any, unrolled: Any, per_step: Any
) -> None:
    keep = jnp.array([True, False, True, True, False])

    def masked_scaled(scan_fn: Any) -> Any:
        return scale(mask(hmm, mask=keep), scale=3.0)(Y, scan_fn)

    ours = trace(substitute(masked_scaled, data={"x": X})).get_trace(scan)
    loop = unrolled("t")

    def stepwise(scan_fn: Any) -> Any:
        # the mask acts per step in the unrolled loop: feed each step its own element
        def one_step(c: Any, inputs: Any) -> Any:
            y, m = inputs
            with mask(mask=m), scale(scale=3.0):
                x = sample("x", dist.Normal(c, 1.0))
                sample("y", dist.Normal(x, 0.5), obs=y)
            return x, None

        return scan_fn(one_step, jnp.zeros(()), (Y, keep))

    theirs = trace(substitute(stepwise, data=per_step({"x": X}, "t", T))).get_trace(loop)
    np.testing.assert_allclose(log_joint(ours), log_joint(theirs), rtol=1e-6)
    assert ours["x"].scale == 3.0


def test_block_and_infer_config_outside_act_on_stacked_sites() -> None:
    tr = trace(block(seed(hmm, rng_seed=0), hide=["x"])).get_trace(Y)
    assert set(tr) == {"y"}
    configured = infer_config(hmm, config_fn=lambda msg: {"kl": "analytic"})
    tr = trace(seed(configured, rng_seed=0)).get_trace(Y)
    assert tr["x"].infer["kl"] == "analytic"


def test_block_and_seed_commute_around_scan() -> None:
    a = trace(seed(block(hmm, hide=["y"]), rng_seed=1)).get_trace()
    b = trace(block(seed(hmm, rng_seed=1), hide=["y"])).get_trace()
    np.testing.assert_array_equal(a["x"].value, b["x"].value)


# -- handlers that act inside the body ------------------------------------------------
def normal_logpdf(v: Any, m: Any, s: float) -> Any:
    v, m = np.asarray(v, np.float64), np.asarray(m, np.float64)
    return -0.5 * ((v - m) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)


def test_do_outside_intervenes_step_by_step() -> None:
    intervention = jnp.full(T, 7.0)
    model = do(hmm, data={"x": intervention})
    tr = trace(seed(model, rng_seed=0)).get_trace(Y)
    _, (xs, _) = seed(model, rng_seed=0)(Y)
    np.testing.assert_array_equal(xs, intervention)  # the program sees the intervention
    # the recorded site is the original draw, each step from Normal(intervened x_{t-1}, 1),
    # as in the unrolled loop
    assert not tr["x"].is_observed and not np.allclose(tr["x"].value, 7.0)
    np.testing.assert_array_equal(tr["x"].fn.loc, [0.0, 7.0, 7.0, 7.0, 7.0])
    np.testing.assert_array_equal(tr["y"].fn.loc, intervention)


def test_uncondition_outside_draws_the_observations(log_joint: Any, unrolled: Any) -> None:
    tr = trace(seed(uncondition(hmm), rng_seed=0)).get_trace(Y)
    y = tr["y"]
    assert not y.is_observed and y.infer["was_observed"]
    np.testing.assert_array_equal(y.infer["obs"], Y)
    assert not np.allclose(y.value, Y)
    np.testing.assert_array_equal(y.fn.loc, tr["x"].value)  # y_t ~ Normal(x_t, 0.5)
    data = {f"t{t}/{name}": tr[name].value[t] for name in ("x", "y") for t in range(T)}
    ref = trace(substitute(uncondition(hmm), data=data)).get_trace(Y, unrolled("t"))
    assert not ref["t0/y"].is_observed
    np.testing.assert_allclose(log_joint(tr), log_joint(ref), rtol=1e-6)


def test_reparam_outside_decenters_each_step(log_joint: Any) -> None:
    config = {"x": LocScaleReparam(centered=0.0)}
    tr = trace(seed(reparam(hmm, config=config), rng_seed=0)).get_trace(Y)
    assert tr["x"].type == "deterministic" and tr["x_decentered"].type == "sample"
    noise = np.asarray(tr["x_decentered"].value, np.float64)
    x = np.cumsum(noise)  # x_t = x_{t-1} + noise_t
    np.testing.assert_allclose(tr["x"].value, x, rtol=1e-5, atol=1e-6)
    expected = normal_logpdf(noise, 0.0, 1.0).sum() + normal_logpdf(Y, x, 0.5).sum()
    np.testing.assert_allclose(log_joint(tr), expected, rtol=1e-5)


def test_lift_of_a_body_param_is_a_clear_error() -> None:
    def model() -> Any:
        return scan(body_with_param_and_deterministic, jnp.zeros(()), Y)

    lifted = lift(model, prior={"w": dist.Normal(0.0, 1.0)})
    with pytest.raises(SiteError, match=r"lift: param 'w' is declared inside the body of scan"):
        trace(seed(lifted, rng_seed=0)).get_trace()
    other = lift(model, prior={"v": dist.Normal(0.0, 1.0)})  # does not touch the body
    assert trace(seed(other, rng_seed=0)).get_trace()["w"].type == "param"
