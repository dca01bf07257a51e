"""``fori_loop`` and ``while_loop``: against the loop unrolled in Python."""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from plait import SiteError, Unit, deterministic, log_prob_sum, plate, sample
from plait.control_flow import fori_loop, while_loop
from plait.control_flow.plugin_api import ACCUMULATED
from plait.handlers import condition, mask, scale, seed, substitute, trace

DATA = jnp.array([0.5, 1.5, 2.5, 9.0, 0.1, -0.7])
VALUES = {"mu": jnp.asarray(0.3), "sd": jnp.asarray(1.4)}


def priors() -> tuple[Any, Any]:
    return sample("mu", dist.Normal(0.0, 5.0)), sample("sd", dist.LogNormal(0.0, 1.0))


def drift(n: Any) -> Any:
    """Observations around ``mu`` plus a drift the carry holds (independent of ``mu``)."""
    mu, sd = priors()

    def body(i: Any, c: Any) -> Any:
        sample("y", dist.Normal(mu + c, sd), obs=DATA[i])
        return c + 0.1

    return fori_loop(0, n, body, 0.0)


def drift_unrolled(n: int) -> Any:
    mu, sd = priors()
    c = 0.0
    for i in range(n):
        sample(f"y{i}", dist.Normal(mu + c, sd), obs=DATA[i])
        c = c + 0.1
    return c


def walk(n: Any) -> Any:
    """The carry accumulates ``mu``: the gradient goes through the carry."""
    mu, sd = priors()

    def body(i: Any, c: Any) -> Any:
        sample("y", dist.Normal(c, sd), obs=DATA[i])
        return c + mu

    return fori_loop(0, n, body, 0.0)


def walk_unrolled(n: int) -> Any:
    mu, sd = priors()
    c = 0.0
    for i in range(n):
        sample(f"y{i}", dist.Normal(c, sd), obs=DATA[i])
        c = c + mu
    return c


def in_jit(model: Any, *args: Any) -> tuple[Any, Any]:
    """The log joint of ``model(*args)`` under ``jax.jit`` (so int bounds are traced), and
    the trace's sites (read their static parts only: their arrays are the jit's)."""
    found: dict[str, Any] = {}

    def run(*a: Any) -> Any:
        found["trace"] = trace(model).get_trace(*a)
        return log_prob_sum(found["trace"])

    return jax.jit(run)(*args), found["trace"]


def joint(model: Any, *args: Any) -> Any:
    def value(values: Any) -> Any:
        return log_prob_sum(trace(substitute(model, data=values)).get_trace(*args))

    return value


@pytest.mark.parametrize(("model", "unrolled"), [(drift, drift_unrolled), (walk, walk_unrolled)])
@pytest.mark.parametrize("n", [0, 1, 4])
def test_traced_bounds_accumulate_the_unrolled_log_density_and_gradient(
    model: Any, unrolled: Any, n: int
) -> None:
    ours = jax.jit(lambda v, n: joint(model, n)(v))
    np.testing.assert_allclose(ours(VALUES, n), joint(unrolled, n)(VALUES), rtol=1e-6)
    g_ours = jax.jit(jax.grad(lambda v, n: joint(model, n)(v)))(VALUES, n)
    g_ref = jax.grad(joint(unrolled, n))(VALUES)
    for name in VALUES:
        np.testing.assert_allclose(g_ours[name], g_ref[name], rtol=1e-5, atol=1e-6)


def test_gradient_under_vmap_and_jit() -> None:
    mus = jnp.array([0.3, -1.0, 2.0])

    def grad_at(mu: Any, n: Any) -> Any:
        values = {"mu": mu, "sd": jnp.asarray(1.4)}
        return jax.grad(joint(walk, n))(values)["mu"]

    expected = [
        jax.grad(joint(walk_unrolled, 4))({"mu": m, "sd": jnp.asarray(1.4)})["mu"] for m in mus
    ]
    got = jax.jit(jax.vmap(grad_at, in_axes=(0, None)))(mus, 4)
    np.testing.assert_allclose(got, jnp.stack(expected), rtol=1e-5)


def test_traced_bounds_send_one_accumulated_site_per_body_site() -> None:
    _, tr = in_jit(substitute(drift, data=VALUES), 3)
    site = tr["y"]
    assert site.is_observed and isinstance(site.fn, Unit)
    assert site.stash[ACCUMULATED].distribution == "Normal"
    assert site.stash[ACCUMULATED].loop == "body"


def test_static_bounds_are_a_scan_with_stacked_latent_sites() -> None:
    def model(n: int) -> Any:
        def body(i: Any, x: Any) -> Any:
            return sample("x", dist.Normal(x, 1.0))

        return fori_loop(0, n, body, 0.0)

    xs = jnp.array([0.5, -0.2, 1.0])
    tr = trace(substitute(model, data={"x": xs})).get_trace(3)
    assert tr["x"].value.shape == (3,)
    prev = jnp.array([0.0, 0.5, -0.2])
    np.testing.assert_allclose(
        log_prob_sum(tr), dist.Normal(prev, 1.0).log_prob(xs).sum(), rtol=1e-6
    )
    assert tr["x"].value.shape == trace(seed(model, rng_seed=0)).get_trace(3)["x"].value.shape


def until_large(data: Any) -> Any:
    """Observations up to (not including) the first one above 2."""
    mu, sd = priors()

    def body(i: Any) -> Any:
        sample("y", dist.Normal(mu, sd), obs=data[i])
        return i + 1

    return while_loop(lambda i: data[i] <= 2.0, body, 0)


def test_while_loop_stops_where_the_data_says() -> None:
    def unrolled(data: Any) -> Any:
        mu, sd = priors()
        i = 0
        while data[i] <= 2.0:
            sample(f"y{i}", dist.Normal(mu, sd), obs=data[i])
            i += 1
        return i

    np.testing.assert_allclose(
        jax.jit(joint(until_large, DATA))(VALUES), joint(unrolled, DATA)(VALUES), rtol=1e-6
    )
    g = jax.grad(joint(until_large, DATA))(VALUES)
    g_ref = jax.grad(joint(unrolled, DATA))(VALUES)
    for name in VALUES:
        np.testing.assert_allclose(g[name], g_ref[name], rtol=1e-5)
    assert int(seed(substitute(until_large, data=VALUES), rng_seed=0)(DATA)) == 2


def test_condition_gives_each_iteration_its_value() -> None:
    def model(n: Any) -> Any:
        mu, sd = priors()

        def body(i: Any, c: Any) -> Any:
            sample("y", dist.Normal(mu, sd))
            return c

        return fori_loop(0, n, body, 0.0)

    ys = DATA[:4]
    value, tr = in_jit(substitute(condition(model, data={"y": ys}), data=VALUES), 4)
    assert ACCUMULATED in tr["y"].stash
    expected = dist.Normal(0.0, 5.0).log_prob(0.3) + dist.LogNormal(0.0, 1.0).log_prob(1.4)
    expected += dist.Normal(0.3, 1.4).log_prob(ys).sum()
    np.testing.assert_allclose(value, expected, rtol=1e-6)


def test_plates_inside_and_outside_and_handlers_after_the_loop() -> None:
    block = jnp.arange(12.0).reshape(4, 3) / 4

    def model(n: Any) -> Any:
        mu, sd = priors()
        with plate("cols", 3, subsample_size=3):

            def body(i: Any, c: Any) -> Any:
                with plate("rows", 2):
                    sample("y", dist.Normal(mu, sd), obs=jnp.stack([block[i], block[i] + 1.0]))
                return c

            return fori_loop(0, n, body, 0.0)

    value, tr = in_jit(substitute(model, data=VALUES), 4)
    assert tr["y"].fn.batch_shape == (2, 3)
    assert [f.name for f in tr["y"].cond_indep_stack] == ["rows", "cols"]
    obs = jnp.concatenate([block, block + 1.0])
    priors_lp = dist.Normal(0.0, 5.0).log_prob(0.3) + dist.LogNormal(0.0, 1.0).log_prob(1.4)
    expected = priors_lp + dist.Normal(0.3, 1.4).log_prob(obs).sum()
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    scaled, _ = in_jit(scale(substitute(model, data=VALUES), 2.0), 4)
    np.testing.assert_allclose(scaled, 2.0 * expected, rtol=1e-6)
    masked, _ = in_jit(mask(substitute(model, data=VALUES), mask=False), 4)
    np.testing.assert_allclose(masked, 0.0, atol=1e-6)


def test_latent_site_in_a_loop_of_unknown_length_points_to_scan() -> None:
    def model(n: Any) -> Any:
        return fori_loop(0, n, lambda i, x: sample("x", dist.Normal(x, 1.0)), 0.0)

    latent = re.escape("site 'x' inside while_loop '<lambda>' is latent")
    with pytest.raises(SiteError, match=latent):
        in_jit(seed(model, rng_seed=0), 3)
    with pytest.raises(SiteError, match=re.escape("plait.control_flow.scan")):
        in_jit(seed(model, rng_seed=0), 3)


def test_deterministic_site_in_a_while_loop_is_an_error() -> None:
    def model() -> Any:
        def body(i: Any) -> Any:
            deterministic("d", i * 2)
            return i + 1

        return while_loop(lambda i: i < 3, body, 0)

    with pytest.raises(SiteError, match=re.escape("deterministic site 'd' inside while_loop")):
        trace(model).get_trace()


def test_sites_in_cond_fun_are_an_error() -> None:
    def model() -> Any:
        return while_loop(lambda i: sample("c", dist.Normal(), obs=1.0) > i, lambda i: i + 1.0, 0.0)

    with pytest.raises(SiteError, match="cond_fun has a sample site 'c'"):
        trace(model).get_trace()


def test_without_handlers_they_are_lax_loops() -> None:
    assert int(while_loop(lambda i: i < 5, lambda i: i + 2, 0)) == 6
    assert float(fori_loop(0, 4, lambda i, x: x + i, 0.0)) == 6.0
    assert float(jax.jit(lambda n: fori_loop(0, n, lambda i, x: x + i, 0.0))(4)) == 6.0
