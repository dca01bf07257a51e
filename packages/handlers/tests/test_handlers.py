"""Each handler's behaviour, against closed forms and NumPyro's documented semantics."""

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

import plait
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


def two_sites() -> tuple[Any, Any]:
    a = plait.sample("a", dist.Normal(0.0, 1.0))
    b = plait.sample("b", dist.Normal(a, 1.0))
    return a, b


def test_trace_context_manager_returns_the_trace() -> None:
    with trace() as tr, seed(rng_seed=0):
        two_sites()
    assert list(tr) == ["a", "b"]


def test_substitute_sets_value_but_not_observed_and_reaches_params_and_deterministics() -> None:
    def model() -> Any:
        p = plait.param("p", 1.0)
        d = plait.deterministic("d", p + 1.0)
        plait.sample("x", dist.Normal(0.0, 1.0))
        return d

    tr = trace(seed(substitute(model, data={"p": 5.0, "d": 9.0, "x": 2.0}), rng_seed=0)).get_trace()
    assert tr["p"].value == 5.0 and tr["d"].value == 9.0 and tr["x"].value == 2.0
    assert not tr["x"].is_observed


def test_substitute_fn_returning_none_has_no_effect() -> None:
    model = seed(substitute(two_sites, substitute_fn=lambda msg: None), rng_seed=0)
    assert model() == seed(two_sites, rng_seed=0)()


def test_condition_marks_observed_and_ignores_deterministic() -> None:
    def model() -> None:
        plait.sample("x", dist.Normal(0.0, 1.0))
        plait.deterministic("d", 1.0)

    tr = trace(seed(condition(model, data={"x": 3.0, "d": 7.0}), rng_seed=0)).get_trace()
    assert tr["x"].is_observed and tr["x"].value == 3.0
    assert tr["d"].value == 1.0


def test_replay_reuses_latent_values_and_rejects_observed_ones() -> None:
    guide = trace(seed(two_sites, rng_seed=5)).get_trace()
    replayed = trace(seed(replay(two_sites, trace=guide), rng_seed=9)).get_trace()
    assert replayed["a"].value == guide["a"].value
    assert replayed["b"].value == guide["b"].value
    observed = trace(condition(two_sites, data={"a": 0.0, "b": 0.0})).get_trace()
    with pytest.raises(
        plait.SiteError, match=re.escape("replay: site 'a' is a latent sample site")
    ):
        seed(replay(two_sites, trace=observed), rng_seed=0)()


@pytest.mark.parametrize(
    ("kwargs", "visible"),
    [
        ({}, []),
        ({"hide": ["a"]}, ["b"]),
        ({"expose": ["a"]}, ["a"]),
        ({"expose_types": ["deterministic"]}, []),
        ({"hide_fn": lambda msg: msg.name == "b"}, ["a"]),
    ],
)
def test_block_hides_by_precedence(kwargs: dict[str, Any], visible: list[str]) -> None:
    tr = trace(block(seed(two_sites, rng_seed=0), **kwargs)).get_trace()
    assert list(tr) == visible


def test_scale_multiplies_and_composes() -> None:
    tr = trace(scale(scale(seed(two_sites, rng_seed=0), scale=2.0), scale=3.0)).get_trace()
    assert tr["a"].scale == 6.0


def test_mask_zeroes_log_prob_and_is_seen_by_get_mask() -> None:
    keep = jnp.array([True, False])

    def model() -> Any:
        with plait.plate("n", 2):
            plait.sample("y", dist.Normal(0.0, 1.0), obs=jnp.array([1.0, 2.0]))
        return plait.get_mask()

    with trace() as tr, mask(mask=keep):
        seen = model()
    np.testing.assert_array_equal(seen, keep)
    lp = tr["y"].fn.log_prob(tr["y"].value)
    np.testing.assert_allclose(lp, [dist.Normal(0.0, 1.0).log_prob(1.0), 0.0])
    with mask(mask=False), mask(mask=keep):
        assert not np.any(plait.get_mask())


def test_scope_renames_sites_and_plates_and_nests() -> None:
    def model() -> None:
        with plait.plate("p", 2):
            plait.sample("x", dist.Normal(0.0, 1.0))

    tr = trace(scope(scope(seed(model, rng_seed=0), prefix="a"), prefix="b")).get_trace()
    assert list(tr) == ["b/a/p", "b/a/x"]
    assert [f.name for f in tr["b/a/x"].cond_indep_stack] == ["b/a/p"]


def test_infer_config_updates_infer() -> None:
    config = infer_config(two_sites, config_fn=lambda msg: {"enumerate": "parallel"})
    tr = trace(seed(config, rng_seed=0)).get_trace()
    assert tr["a"].infer == {"enumerate": "parallel"}


def test_uncondition_makes_observed_sites_latent_and_keeps_the_observation() -> None:
    model = condition(two_sites, data={"b": 4.0})
    tr = trace(seed(uncondition(model), rng_seed=0)).get_trace()
    assert not tr["b"].is_observed
    assert tr["b"].infer["obs"] == 4.0 and tr["b"].infer["was_observed"]
    assert tr["b"].value != 4.0


def test_do_records_both_worlds_like_numpyro() -> None:
    def model(P: Any) -> Any:
        x = P.sample("x", dist.Normal(0.0, 1.0))
        return P.sample("y", dist.Normal(x, 0.1))

    ours = trace(seed(do(lambda: model(plait), data={"x": 3.0}), rng_seed=1)).get_trace()
    theirs = nh.trace(
        nh.seed(nh.do(lambda: model(numpyro), data={"x": 3.0}), rng_seed=1)
    ).get_trace()
    # The intervened copy (x__CF) stops at `do`; outer handlers see the untouched x.
    assert list(ours) == list(theirs) == ["x", "y"]
    for name in ours:
        np.testing.assert_array_equal(ours[name].value, theirs[name]["value"])
    assert abs(float(ours["y"].value) - 3.0) < 0.5


def test_do_with_condition_gives_a_counterfactual() -> None:
    def model() -> Any:
        x = plait.sample("x", dist.Normal(0.0, 1.0))
        return plait.sample("y", dist.Normal(x, 0.1))

    tr = trace(seed(do(condition(model, data={"x": 1.0}), data={"x": 3.0}), rng_seed=0)).get_trace()
    assert tr["x"].is_observed and tr["x"].value == 1.0
    assert abs(float(tr["y"].value) - 3.0) < 0.5  # the program saw the intervention


def test_lift_turns_params_into_samples_and_memoizes() -> None:
    def model() -> tuple[Any, Any]:
        return plait.param("w", 0.5), plait.param("w", 0.5)

    lifted = lift(model, prior=dist.Normal(0.0, 1.0))
    first, second = seed(lifted, rng_seed=0)()
    assert first == second != 0.5
    tr = trace(seed(lifted, rng_seed=0)).get_trace()
    assert tr["w"].type == "sample"
    untouched = lift(model, prior={"other": dist.Normal(0.0, 1.0)})
    assert seed(untouched, rng_seed=0)() == (0.5, 0.5)


def test_loc_scale_reparam_decenters_and_keeps_the_density_of_the_value() -> None:
    def model() -> Any:
        with plait.plate("n", 3):
            return plait.sample("x", dist.Normal(1.0, 2.0))

    decentered = reparam(model, config={"x": LocScaleReparam(centered=0.0)})
    tr = trace(seed(decentered, rng_seed=0)).get_trace()
    assert tr["x"].type == "deterministic"
    noise = tr["x_decentered"].value
    assert tr["x_decentered"].fn.batch_shape == (3,)
    np.testing.assert_allclose(tr["x"].value, 1.0 + 2.0 * noise, rtol=1e-6)
    ref = nh.trace(
        nh.seed(
            nh.reparam(
                lambda: numpyro.sample("x", dist.Normal(1.0, 2.0).expand([3])),
                config={"x": numpyro.infer.reparam.LocScaleReparam(0.0)},
            ),
            rng_seed=0,
        )
    ).get_trace()
    np.testing.assert_allclose(tr["x"].value, ref["x"]["value"], rtol=1e-6)


def test_loc_scale_reparam_learns_centering_as_a_param() -> None:
    model = reparam(
        lambda: plait.sample("x", dist.Normal(1.0, 2.0)), config={"x": LocScaleReparam()}
    )
    tr = trace(seed(model, rng_seed=0)).get_trace()
    assert tr["x_centered"].type == "param" and tr["x_centered"].value == 0.5


def test_obs_mask_splits_the_site_like_numpyro() -> None:
    y = jnp.array([1.0, 0.0, 3.0])
    keep = jnp.array([True, False, True])

    def model(P: Any) -> Any:
        with P.plate("n", 3):
            return P.sample("y", dist.Normal(0.0, 1.0), obs=y, obs_mask=keep)

    ours = trace(seed(lambda: model(plait), rng_seed=0)).get_trace()
    theirs = nh.trace(nh.seed(lambda: model(numpyro), rng_seed=0)).get_trace()
    assert list(ours) == list(theirs) == ["n", "y_observed", "y_unobserved", "y"]
    assert ours["y"].type == "deterministic"
    np.testing.assert_array_equal(ours["y"].value, theirs["y"]["value"])
    lp = ours["y_observed"].fn.log_prob(ours["y_observed"].value)
    np.testing.assert_allclose(lp, jnp.where(keep, dist.Normal(0.0, 1.0).log_prob(y), 0.0))


def test_plate_keeps_distribution_dims_left_of_the_plates() -> None:
    def model() -> Any:
        with plait.plate("p", 2):
            return plait.sample("x", dist.Normal(jnp.zeros((3, 1)), 1.0))

    assert seed(model, rng_seed=0)().shape == (3, 2)


def test_sample_shape_inside_plate_is_folded_into_batch() -> None:
    def model() -> Any:
        with plait.plate("a", 3):
            return plait.sample("x", dist.Normal(0.0, 1.0), sample_shape=(4, 1))

    assert seed(model, rng_seed=0)().shape == (4, 3)


def test_prng_key_under_vmap_gives_same_key_per_lane() -> None:
    def model(_: jax.Array) -> jax.Array:
        key = plait.prng_key()
        assert key is not None
        return jax.random.normal(key)

    out = jax.vmap(seed(model, rng_seed=0))(jnp.arange(3.0))
    assert np.all(out == out[0])
    per_seed = jax.vmap(lambda s: seed(model, rng_seed=s)(0.0))(jnp.arange(3))
    assert len(set(np.asarray(per_seed).tolist())) == 3
