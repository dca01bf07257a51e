"""``cond`` and ``switch``: against NumPyro's ``cond`` where both have the feature, and
against hand-written log densities and the branches run alone beyond it."""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import numpyro.handlers as nh
import pytest
from numpyro.contrib.control_flow import cond as numpyro_cond
from numpyro.infer.util import log_density as numpyro_log_density

from plait import SiteError, deterministic, log_prob_sum, plate, sample
from plait.control_flow import cond, scan, switch
from plait.control_flow.plugin_api import BranchDistribution
from plait.handlers import condition, mask, replay, scale, scope, seed, substitute, trace

Y = jnp.array([0.3, 1.5, -2.0, 0.8])


def cluster_model(cond_fn: Any = cond, sample_fn: Any = sample) -> Any:
    """NumPyro's ``cond`` docstring model."""

    def true_fun(_: Any) -> Any:
        return sample_fn("x", dist.Normal(20.0))

    def false_fun(_: Any) -> Any:
        return sample_fn("x", dist.Normal(0.0))

    cluster = sample_fn("cluster", dist.Normal())
    return cond_fn(cluster > 0, true_fun, false_fun, None)


def observed_model(y: Any, cond_fn: Any = cond, sample_fn: Any = sample) -> Any:
    """A latent scale shared by two observation models, chosen by a latent sign."""
    s = sample_fn("s", dist.LogNormal(0.0, 0.5))
    flip = sample_fn("flip", dist.Normal())

    def up(s: Any) -> Any:
        m = sample_fn("m", dist.Normal(2.0, s))
        return sample_fn("y", dist.Normal(m, 1.0), obs=y)

    def down(s: Any) -> Any:
        m = sample_fn("m", dist.Normal(-1.0, 2.0 * s))
        return sample_fn("y", dist.Normal(m, 0.5), obs=y)

    return cond_fn(flip > 0, up, down, s)


# -- NumPyro parity -----------------------------------------------------------------------
@pytest.mark.parametrize("rng_seed", [0, 1, 2, 3, 7])
def test_seeded_draws_equal_numpyro(rng_seed: int) -> None:
    ours = trace(seed(cluster_model, rng_seed=rng_seed)).get_trace()
    theirs = nh.trace(nh.seed(cluster_model, rng_seed=rng_seed)).get_trace(
        numpyro_cond, numpyro.sample
    )
    assert list(ours) == [n for n in theirs if theirs[n]["type"] == "sample"]
    for name in ours:
        np.testing.assert_array_equal(ours[name].value, theirs[name]["value"])
        assert ours[name].is_observed == theirs[name]["is_observed"]


@pytest.mark.parametrize("rng_seed", [0, 3])
def test_seeded_trace_of_observed_model_equals_numpyro(rng_seed: int) -> None:
    y = jnp.asarray(0.7)
    ours = trace(seed(observed_model, rng_seed=rng_seed)).get_trace(y)
    theirs = nh.trace(nh.seed(observed_model, rng_seed=rng_seed)).get_trace(
        y, numpyro_cond, numpyro.sample
    )
    for name in ("s", "flip", "m", "y"):
        np.testing.assert_allclose(ours[name].value, theirs[name]["value"], rtol=1e-6)
        np.testing.assert_allclose(
            ours[name].fn.log_prob(ours[name].value),
            theirs[name]["fn"].log_prob(theirs[name]["value"]),
            rtol=1e-6,
        )


@pytest.mark.parametrize("flip", [1.3, -0.4])
def test_log_density_equals_numpyro(flip: float) -> None:
    params = {"s": 0.8, "flip": flip, "m": 0.4}
    y = jnp.asarray(0.7)
    theirs, _ = numpyro_log_density(observed_model, (y, numpyro_cond, numpyro.sample), {}, params)
    ours = log_prob_sum(trace(substitute(observed_model, data=params)).get_trace(y))
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_jitted_log_density_equals_numpyro_and_its_gradient() -> None:
    y = jnp.asarray(0.7)

    def ours(values: Any) -> Any:
        return log_prob_sum(trace(substitute(observed_model, data=values)).get_trace(y))

    def theirs(values: Any) -> Any:
        return numpyro_log_density(observed_model, (y, numpyro_cond, numpyro.sample), {}, values)[0]

    for flip in (1.3, -0.4):
        values = {"s": jnp.asarray(0.8), "flip": jnp.asarray(flip), "m": jnp.asarray(0.4)}
        np.testing.assert_allclose(jax.jit(ours)(values), theirs(values), rtol=1e-6)
        g_ours, g_theirs = jax.grad(ours)(values), jax.grad(theirs)(values)
        for name in values:
            np.testing.assert_allclose(g_ours[name], g_theirs[name], rtol=1e-5, atol=1e-6)


def test_condition_reaches_into_branches_as_numpyro() -> None:
    data = {"x": 3.0}
    ours = trace(seed(condition(cluster_model, data=data), rng_seed=1)).get_trace()
    theirs = nh.trace(nh.seed(nh.condition(cluster_model, data=data), rng_seed=1)).get_trace(
        numpyro_cond, numpyro.sample
    )
    assert ours["x"].is_observed and theirs["x"]["is_observed"]
    np.testing.assert_allclose(ours["x"].value, 3.0)
    np.testing.assert_allclose(
        ours["x"].fn.log_prob(ours["x"].value), theirs["x"]["fn"].log_prob(3.0), rtol=1e-6
    )


def test_replay_of_a_guide_trace_reaches_into_branches() -> None:
    guide_trace = trace(seed(cluster_model, rng_seed=5)).get_trace()
    replayed = trace(seed(replay(cluster_model, trace=guide_trace), rng_seed=9)).get_trace()
    for name in ("cluster", "x"):
        np.testing.assert_array_equal(replayed[name].value, guide_trace[name].value)


def test_without_handlers_it_is_lax_cond() -> None:
    out = cond(jnp.asarray(0.5) > 0, lambda x: x + 1.0, lambda x: x - 1.0, 2.0)
    assert float(out) == 3.0
    out = switch(5, [lambda x: x, lambda x: 2 * x, lambda x: 3 * x], 2.0)  # clipped, as lax
    assert float(out) == 6.0


# -- beyond NumPyro: different classes, sites in some branches, batched predicates --------
def mixed_model(y: Any) -> Any:
    flip = sample("flip", dist.Normal())
    return cond(
        flip > 0,
        lambda _: sample("y", dist.Normal(2.0, 1.0), obs=y),
        lambda _: sample("y", dist.Laplace(-1.0, 0.5), obs=y),
        None,
    )


@pytest.mark.parametrize("flip", [0.9, -0.2])
def test_different_classes_give_the_chosen_density(flip: float) -> None:
    tr = trace(substitute(mixed_model, data={"flip": flip})).get_trace(0.7)
    chosen = dist.Normal(2.0, 1.0) if flip > 0 else dist.Laplace(-1.0, 0.5)
    assert isinstance(tr["y"].fn, BranchDistribution)
    np.testing.assert_allclose(
        log_prob_sum(tr), dist.Normal().log_prob(flip) + chosen.log_prob(0.7), rtol=1e-6
    )


@pytest.mark.parametrize("rng_seed", [0, 1, 4])
def test_different_classes_draw_the_chosen_branch_draw(rng_seed: int) -> None:
    def model() -> Any:
        flip = sample("flip", dist.Normal())
        return cond(
            flip > 0,
            lambda _: sample("x", dist.Normal(5.0, 1.0)),
            lambda _: sample("x", dist.Gumbel(-5.0, 1.0)),
            None,
        )

    tr = trace(seed(model, rng_seed=rng_seed)).get_trace()
    key = jax.random.split(jax.random.key(rng_seed))[0]  # the key seed keeps after 'flip'
    cond_key = jax.random.split(key)[1]
    site_key = jax.random.split(cond_key)[1]  # the branch's first site, seeded by it
    chosen = dist.Normal(5.0, 1.0) if tr["flip"].value > 0 else dist.Gumbel(-5.0, 1.0)
    np.testing.assert_allclose(tr["x"].value, chosen.sample(site_key), rtol=1e-6)


def test_batched_predicate_in_a_plate_chooses_per_element() -> None:
    def model(y: Any) -> Any:
        with plate("data", 4):
            z = sample("z", dist.Normal())
            return cond(
                z > 0,
                lambda _: sample("y", dist.Normal(2.0, 1.0), obs=y),
                lambda _: sample("y", dist.Laplace(-1.0, 0.5), obs=y),
                None,
            )

    zs = jnp.array([1.0, -1.0, 0.5, -2.0])
    tr = trace(substitute(model, data={"z": zs})).get_trace(Y)
    per_element = jnp.where(
        zs > 0, dist.Normal(2.0, 1.0).log_prob(Y), dist.Laplace(-1.0, 0.5).log_prob(Y)
    )
    assert tr["y"].fn.batch_shape == (4,)
    assert [f.name for f in tr["y"].cond_indep_stack] == ["data"]
    np.testing.assert_allclose(
        log_prob_sum(tr), dist.Normal().log_prob(zs).sum() + per_element.sum(), rtol=1e-6
    )


def test_batched_predicate_selects_outputs_and_latent_draws() -> None:
    def model() -> Any:
        with plate("data", 5):
            z = sample("z", dist.Normal())
            return cond(
                z > 0,
                lambda _: sample("x", dist.Normal(10.0, 1.0)),
                lambda _: sample("x", dist.Normal(-10.0, 1.0)),
                None,
            )

    tr = trace(seed(model, rng_seed=3)).get_trace()
    x, z = tr["x"].value, tr["z"].value
    assert x.shape == (5,)
    np.testing.assert_array_equal(x > 0, z > 0)
    out = seed(model, rng_seed=3)()
    np.testing.assert_array_equal(out, x)


def test_switch_equals_each_branch_run_alone() -> None:
    emissions = [dist.Normal(0.0, 1.0), dist.Laplace(0.5, 2.0), dist.Normal(3.0, 0.2)]

    def model(k: Any) -> Any:
        return switch(k, [lambda e=e: sample("x", e) for e in emissions])

    for k, chosen in enumerate(emissions):
        tr = trace(seed(model, rng_seed=2)).get_trace(k)
        alone = trace(seed(lambda c=chosen: sample("x", c), rng_seed=2)).get_trace()
        # switch draws with the cond's key, split once from the seed's
        cond_key = jax.random.split(jax.random.key(2))[1]
        np.testing.assert_allclose(
            tr["x"].value, chosen.sample(jax.random.split(cond_key)[1]), rtol=1e-6
        )
        np.testing.assert_allclose(
            tr["x"].fn.log_prob(tr["x"].value), chosen.log_prob(tr["x"].value), rtol=1e-6
        )
        assert alone["x"].value.shape == tr["x"].value.shape


def test_latent_site_in_one_branch_integrates_out_elsewhere() -> None:
    def model() -> Any:
        flip = sample("flip", dist.Normal())

        def with_extra(_: Any) -> Any:
            u = sample("u", dist.Normal(1.0, 2.0))
            return sample("y", dist.Normal(u, 1.0), obs=0.5)

        def without(_: Any) -> Any:
            return sample("y", dist.Normal(0.0, 1.0), obs=0.5)

        return cond(flip > 0, with_extra, without, None)

    for flip in (1.0, -1.0):
        tr = trace(substitute(model, data={"flip": flip, "u": 0.3})).get_trace()
        prior_u = dist.Normal(1.0, 2.0).log_prob(0.3)  # in both worlds: it integrates to 1
        lik = dist.Normal(0.3, 1.0).log_prob(0.5) if flip > 0 else dist.Normal().log_prob(0.5)
        np.testing.assert_allclose(
            log_prob_sum(tr), dist.Normal().log_prob(flip) + prior_u + lik, rtol=1e-6
        )


def test_observed_site_in_one_branch_adds_nothing_elsewhere() -> None:
    def model() -> Any:
        flip = sample("flip", dist.Normal())
        return cond(
            flip > 0,
            lambda _: sample("y", dist.Normal(0.0, 1.0), obs=2.0),
            lambda _: jnp.asarray(2.0),
            None,
        )

    for flip, extra in ((1.0, dist.Normal().log_prob(2.0)), (-1.0, 0.0)):
        tr = trace(substitute(model, data={"flip": flip})).get_trace()
        np.testing.assert_allclose(
            log_prob_sum(tr), dist.Normal().log_prob(flip) + extra, rtol=1e-6
        )


# -- handlers acting after, and inside ----------------------------------------------------
def test_mask_and_scale_act_on_the_combined_sites() -> None:
    values = {"flip": 0.9}
    plain = log_prob_sum(trace(substitute(mixed_model, data=values)).get_trace(0.7))
    scaled = log_prob_sum(trace(scale(substitute(mixed_model, data=values), 3.0)).get_trace(0.7))
    masked = log_prob_sum(
        trace(mask(substitute(mixed_model, data=values), mask=False)).get_trace(0.7)
    )
    np.testing.assert_allclose(scaled, 3.0 * plain, rtol=1e-6)
    assert float(masked) == 0.0


def test_scope_renames_branch_sites_and_substitute_matches_scoped_names() -> None:
    scoped = scope(cluster_model, prefix="a")
    tr = trace(seed(substitute(scoped, data={"a/x": 4.0}), rng_seed=0)).get_trace()
    assert list(tr) == ["a/cluster", "a/x"]
    np.testing.assert_allclose(tr["a/x"].value, 4.0)


def test_deterministic_sites_of_branches_are_combined() -> None:
    def model(flag: Any) -> Any:
        return cond(
            flag, lambda v: deterministic("d", v + 1.0), lambda v: deterministic("d", v * 10), 2.0
        )

    assert float(trace(model).get_trace(True)["d"].value) == 3.0
    assert float(trace(model).get_trace(False)["d"].value) == 20.0


def test_cond_inside_scan_gets_the_steps_values() -> None:
    xs = jnp.array([0.2, -1.0, 3.0])

    def model() -> Any:
        def step(c: Any, t: Any) -> Any:
            x = sample("x", dist.Normal(c, 1.0))
            y = cond(
                x > 0,
                lambda _: sample("y", dist.Normal(x, 1.0), obs=1.0),
                lambda _: sample("y", dist.Laplace(x, 1.0), obs=1.0),
                None,
            )
            return x, y

        return scan(step, 0.0, None, length=3)

    def ours(xs: Any) -> Any:
        return log_prob_sum(trace(substitute(model, data={"x": xs})).get_trace())

    def expected(xs: Any) -> Any:
        prev = jnp.concatenate([jnp.zeros(1), xs[:-1]])
        lik = jnp.where(
            xs > 0, dist.Normal(xs, 1.0).log_prob(1.0), dist.Laplace(xs, 1.0).log_prob(1.0)
        )
        return dist.Normal(prev, 1.0).log_prob(xs).sum() + lik.sum()

    np.testing.assert_allclose(ours(xs), expected(xs), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.grad(ours))(xs), jax.grad(expected)(xs), rtol=1e-6)
    assert trace(substitute(model, data={"x": xs})).get_trace()["y"].value.shape == (3,)


def test_nested_scan_cond_substitution_cuts_both_levels() -> None:
    values = jnp.arange(6.0).reshape(2, 3)

    def model() -> Any:
        def outer(c: Any, _: Any) -> Any:
            def inner(c: Any, _: Any) -> Any:
                v = cond(True, lambda _: sample("v", dist.Normal()), lambda _: 0.0, None)
                return c, v

            return c, scan(inner, c, None, length=3)[1]

        return scan(outer, 0.0, None, length=2)[1]

    np.testing.assert_array_equal(seed(substitute(model, data={"v": values}), rng_seed=0)(), values)


# -- errors -------------------------------------------------------------------------------
def test_observed_in_one_branch_latent_in_another_is_an_error() -> None:
    def model() -> Any:
        return cond(
            True,
            lambda _: sample("x", dist.Normal(), obs=1.0),
            lambda _: sample("x", dist.Normal()),
            None,
        )

    with pytest.raises(SiteError, match=re.escape("site 'x' in the branches of cond")):
        trace(seed(model, rng_seed=0)).get_trace()


def test_different_event_shapes_are_an_error() -> None:
    def model() -> Any:
        return cond(
            True,
            lambda _: sample("x", dist.Normal(jnp.zeros(2)).to_event(1)),
            lambda _: sample("x", dist.Normal(jnp.zeros(3)).to_event(1)),
            None,
        )

    with pytest.raises(SiteError, match="different event shape"):
        trace(seed(model, rng_seed=0)).get_trace()


def test_latent_sites_with_different_supports_are_an_error() -> None:
    def model() -> Any:
        return cond(
            True,
            lambda _: sample("x", dist.Normal()),
            lambda _: sample("x", dist.Exponential()),
            None,
        )

    with pytest.raises(SiteError, match="different supports"):
        trace(seed(model, rng_seed=0)).get_trace()


def test_branches_returning_different_structures_are_an_error() -> None:
    def model(flag: Any) -> Any:
        with plate("p", 2):
            return cond(flag, lambda _: (1.0, 2.0), lambda _: 1.0, None)

    with pytest.raises(TypeError, match="must return the same structure"):
        trace(model).get_trace(jnp.array([True, False]))
