"""``scan``: draws, log densities, shapes and input errors."""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax import lax
from numpyro.contrib.control_flow import scan as numpyro_scan

import plait
from plait import PlaitError, SiteError, deterministic, factor, plate, sample
from plait.control_flow import _loop as loop_module
from plait.control_flow import scan
from plait.control_flow.plugin_api import STACKED
from plait.handlers import condition, seed, substitute, trace

LOG_2PI = float(np.log(2 * np.pi))


def gaussian_hmm(y: Any = None, T: int = 10, scan_fn: Any = scan, sample_fn: Any = sample) -> Any:
    def transition(x_prev: Any, y_curr: Any) -> Any:
        x_curr = sample_fn("x", dist.Normal(x_prev, 1))
        y_curr = sample_fn("y", dist.Normal(x_curr, 1), obs=y_curr)
        return x_curr, (x_curr, y_curr)

    x0 = sample_fn("x_0", dist.Normal(0, 1))
    _, (x, y) = scan_fn(transition, x0, y, length=T)
    return x, y


def normal_logpdf(v: Any, m: Any) -> Any:
    v, m = np.asarray(v, np.float64), np.asarray(m, np.float64)
    return -0.5 * (v - m) ** 2 - 0.5 * LOG_2PI


def hmm_log_density(x0: Any, x: Any, y: Any) -> float:
    prev = np.concatenate([[x0], np.asarray(x)[:-1]])
    return float(normal_logpdf(x0, 0.0) + normal_logpdf(x, prev).sum() + normal_logpdf(y, x).sum())


@pytest.mark.parametrize("observed", [True, False])
def test_seeded_draws_equal_numpyro_scan(observed: bool) -> None:
    y = jnp.arange(10.0) if observed else None
    ours = trace(seed(gaussian_hmm, rng_seed=3)).get_trace(y)
    theirs = numpyro.handlers.trace(numpyro.handlers.seed(gaussian_hmm, rng_seed=3)).get_trace(
        y, scan_fn=numpyro_scan, sample_fn=numpyro.sample
    )
    assert list(ours) == list(theirs)
    for name in ours:
        np.testing.assert_array_equal(ours[name].value, theirs[name]["value"])
        assert ours[name].is_observed == theirs[name]["is_observed"]


def test_seeded_draws_are_reproducible_and_depend_on_the_seed() -> None:
    first = seed(gaussian_hmm, rng_seed=0)()[0]
    again = seed(gaussian_hmm, rng_seed=0)()[0]
    other = seed(gaussian_hmm, rng_seed=1)()[0]
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_stacked_sites_carry_a_leading_time_dim() -> None:
    tr = trace(seed(gaussian_hmm, rng_seed=0)).get_trace(jnp.arange(10.0))
    x, y = tr["x"], tr["y"]
    assert x.value.shape == (10,) and x.fn.batch_shape == (10,)
    assert y.is_observed and not x.is_observed
    np.testing.assert_array_equal(y.value, np.arange(10.0))
    assert x.stash.get(STACKED) == 10 and y.stash.get(STACKED) == 10
    assert x.cond_indep_stack == [] and x.kwargs["rng_key"] is None


def test_log_density_equals_closed_form(log_joint: Any) -> None:
    key = jax.random.key(0)
    x = jax.random.normal(key, (10,))
    y = jnp.arange(10.0)
    tr = trace(substitute(gaussian_hmm, data={"x_0": 0.5, "x": x})).get_trace(y)
    expected = hmm_log_density(0.5, x, y)
    np.testing.assert_allclose(log_joint(tr), expected, rtol=1e-6)


def test_jitted_value_and_grad_equal_unrolled_loop(log_joint: Any, unrolled: Any) -> None:
    y = jnp.linspace(-1.0, 1.0, 6)

    def density(x: Any, scan_fn: Any, names: Any) -> Any:
        data = {"x_0": x[0], **names(x[1:])}
        model = substitute(gaussian_hmm, data=data)
        return log_joint(trace(model).get_trace(y, T=6, scan_fn=scan_fn))

    x = jnp.sin(jnp.arange(7.0))
    ours = jax.jit(jax.value_and_grad(lambda v: density(v, scan, lambda s: {"x": s})))(x)
    loop = unrolled("t")
    theirs = jax.value_and_grad(
        lambda v: density(v, loop, lambda s: {f"t{t}/x": s[t] for t in range(6)})
    )(x)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-6)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-5, atol=1e-6)


def rich_body(carry: Any, x: Any) -> Any:
    """A body with a plate, a deterministic, a factor and a vector-valued carry."""
    level, total = carry
    level = sample("level", dist.Normal(level, 0.5))
    with plate("obs", 3):
        sample("y", dist.Normal(level, 1.0), obs=x)
    total = deterministic("total", total + level)
    factor("penalty", -0.1 * level**2)
    return (level, total), total


@pytest.mark.parametrize("reverse", [False, True])
def test_rich_body_log_density_equals_unrolled_loop(
    reverse: bool, log_joint: Any, unrolled: Any, per_step: Any
) -> None:
    xs = jnp.arange(12.0).reshape(4, 3) / 4
    levels = jnp.array([0.3, -0.2, 0.5, 0.1])
    init = (jnp.zeros(()), jnp.zeros(()))

    def model(scan_fn: Any) -> Any:
        return scan_fn(rich_body, init, xs, reverse=reverse)

    ours = trace(substitute(model, data={"level": levels})).get_trace(scan)
    loop = unrolled("t")
    theirs = trace(substitute(model, data=per_step({"level": levels}, "t", 4))).get_trace(loop)
    np.testing.assert_allclose(log_joint(ours), log_joint(theirs), rtol=1e-6)
    totals = np.asarray([theirs[f"t{t}/total"].value for t in range(4)])
    np.testing.assert_allclose(ours["total"].value, totals, rtol=1e-6)
    assert ours["y"].value.shape == (4, 3) and ours["y"].fn.batch_shape == (4, 3)


@pytest.mark.parametrize("reverse", [False, True])
def test_plain_scan_without_handlers_equals_lax_scan(reverse: bool) -> None:
    def body(c: Any, x: Any) -> Any:
        return c * 0.5 + x["a"], {"out": c + x["b"]}

    xs = {"a": jnp.arange(5.0), "b": jnp.ones((5, 2))}
    ours = scan(body, jnp.zeros(()), xs, reverse=reverse)
    theirs = lax.scan(body, jnp.zeros(()), xs, reverse=reverse)
    jax.tree_util.tree_map(np.testing.assert_allclose, ours, theirs)


def test_plain_scan_with_length_and_no_xs() -> None:
    carry, ys = scan(lambda c, _: (c + 1, c * 2), jnp.zeros((), jnp.int32), None, length=4)
    assert int(carry) == 4 and ys.tolist() == [0, 2, 4, 6]


def test_sampling_without_a_key_is_a_clear_error() -> None:
    def walk(c: Any, x: Any) -> Any:
        c = sample("x", dist.Normal(c, 1.0))
        return c, c

    with pytest.raises(SiteError, match=re.escape("site 'x' needs a random key")):
        scan(walk, 0.0, None, length=3)
    with pytest.raises(SiteError, match=re.escape("site 'x' needs a random key")):
        trace(scan)(walk, 0.0, None, length=3)


def test_explicit_keys_work_without_handlers() -> None:
    def body(c: Any, key: Any) -> Any:
        return c, sample("z", dist.Normal(0.0, 1.0), rng_key=key)

    keys = jax.random.split(jax.random.key(0), 3)
    _, zs = scan(body, 0.0, keys)
    expected = [dist.Normal(0.0, 1.0).sample(k) for k in keys]
    np.testing.assert_allclose(zs, expected)


def test_scan_under_jit_matches_eager() -> None:
    def run(key: Any) -> Any:
        return trace(seed(gaussian_hmm, rng_seed=key)).get_trace()["x"].value

    key = jax.random.key(7)
    np.testing.assert_array_equal(jax.jit(run)(key), run(key))


def test_xs_leaves_of_different_lengths_are_an_error() -> None:
    def body(c: Any, x: Any) -> Any:
        return c, None

    xs = {"a": jnp.zeros(3), "b": jnp.zeros(4)}
    with pytest.raises(PlaitError, match=r"scan 'body': the leaves of xs have different"):
        scan(body, 0.0, xs)
    with pytest.raises(PlaitError, match=r"scan 'body': the leaves of xs have different"):
        seed(scan, rng_seed=0)(body, 0.0, xs)


def test_length_disagreeing_with_xs_is_an_error() -> None:
    def body(c: Any, x: Any) -> Any:
        return c, None

    with pytest.raises(PlaitError, match=r"scan 'body': length=5 but xs has leading size 3"):
        scan(body, 0.0, jnp.zeros(3), length=5)


def test_missing_length_is_an_error() -> None:
    def body(c: Any, x: Any) -> Any:
        return c, None

    with pytest.raises(PlaitError, match=r"scan 'body': xs has no arrays.*length="):
        scan(body, 0.0, None)


def test_scalar_xs_leaf_is_an_error() -> None:
    def body(c: Any, x: Any) -> Any:
        return c, None

    with pytest.raises(PlaitError, match=r"scan 'body': xs\['a'\] is a scalar"):
        scan(body, 0.0, {"a": jnp.zeros(())})


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (lambda c, x: ((c, c), None), r"scan 'grow': the body returns a carry with structure"),
        (lambda c, x: (c.astype(jnp.int32), None), r"carry from float32\[\] to int32\[\]"),
        (lambda c, x: (jnp.stack([c, c]), None), r"carry from float32\[\] to float32\[2\]"),
    ],
)
def test_carry_that_changes_is_an_error_naming_the_scan(step: Any, message: str) -> None:
    def grow(c: Any, x: Any) -> Any:
        return step(c, x)  # type: ignore[no-any-return]

    with pytest.raises(PlaitError, match=message):
        scan(grow, jnp.zeros(()), None, length=3)
    with pytest.raises(PlaitError, match=message):
        seed(scan, rng_seed=0)(grow, jnp.zeros(()), None, length=3)


def test_body_not_returning_a_pair_is_an_error() -> None:
    def single(c: Any, x: Any) -> Any:
        return c

    with pytest.raises(PlaitError, match=r"scan 'single': the body must return a pair"):
        seed(scan, rng_seed=0)(single, 0.0, None, length=2)


def test_errors_inside_the_body_name_the_scan() -> None:
    def body(c: Any, x: Any) -> Any:
        return c, sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(SiteError) as info:
        trace(scan)(body, 0.0, None, length=2)
    assert "scan 'body'" in " ".join(getattr(info.value, "__notes__", []))


def test_numpyro_seed_docs_example_shapes() -> None:
    with plait.handlers.seed(rng_seed=0):
        x, y = gaussian_hmm(np.arange(10.0))
    assert x.shape == (10,) and y.shape == (10,)
    np.testing.assert_array_equal(y, np.arange(10))
    tr = trace(seed(condition(gaussian_hmm, data={"y": jnp.ones(10)}), rng_seed=0)).get_trace()
    np.testing.assert_array_equal(tr["y"].value, np.ones(10))


@pytest.mark.parametrize("reverse", [False, True])
def test_vectorised_seeded_loop_draws_equal_numpyro(
    reverse: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the carry does not depend on the draws, so plait evaluates all steps at once with
    # vmap and per-step keys split ahead; the draws must still equal NumPyro's loop
    decisions: list[bool] = []
    fed_back = loop_module._carry_is_fed_back
    monkeypatch.setattr(
        loop_module,
        "_carry_is_fed_back",
        lambda closed, n: decisions.append(fed_back(closed, n)) or decisions[-1],
    )

    def model(scan_fn: Any, sample_fn: Any) -> Any:
        def body(c: Any, x: Any) -> Any:
            z = sample_fn("z", dist.Normal(x, 1.0))
            return x, z

        return scan_fn(body, jnp.zeros(()), jnp.arange(6.0), reverse=reverse)

    ours = trace(seed(model, rng_seed=11)).get_trace(scan, sample)
    theirs = numpyro.handlers.trace(numpyro.handlers.seed(model, rng_seed=11)).get_trace(
        numpyro_scan, numpyro.sample
    )
    assert decisions == [False]  # the vectorised loop ran
    np.testing.assert_array_equal(ours["z"].value, theirs["z"]["value"])
    carry, zs = seed(model, rng_seed=11)(scan, sample)
    assert float(carry) == (0.0 if reverse else 5.0)
    np.testing.assert_array_equal(zs, theirs["z"]["value"])
