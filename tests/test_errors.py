"""Bad input gets a clear error that names the site and says what to do."""

from __future__ import annotations

import re

import jax.numpy as jnp
import numpyro.distributions as dist
import pytest

import plait
from plait import HandlerError, SiteError
from plait.handlers import mask, scale, seed, substitute, trace


def run(model: object) -> plait.Trace:
    return trace(seed(model, rng_seed=0)).get_trace()  # type: ignore[arg-type]


def test_sample_with_no_key_and_no_seed() -> None:
    def model() -> None:
        plait.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(SiteError, match=re.escape("site 'x' needs a random key")) as error:
        trace(model).get_trace()
    assert "seed(model, rng_seed=0)" in str(error.value)


def test_duplicate_site_names() -> None:
    def model() -> None:
        plait.sample("x", dist.Normal(0.0, 1.0))
        plait.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(SiteError, match=re.escape("site 'x' appears twice")):
        run(model)


def test_plate_dim_already_in_use() -> None:
    def model() -> None:
        with plait.plate("a", 2, dim=-1), plait.plate("b", 3, dim=-1):
            pass

    with pytest.raises(
        SiteError,
        match=re.escape("plate 'b' asks for dim -1, which the enclosing plate 'a' already uses"),
    ):
        run(model)


def test_batch_shape_that_does_not_broadcast_with_plates_names_site_and_plate() -> None:
    def model() -> None:
        with plait.plate("data", 100):
            plait.sample("x", dist.Normal(jnp.zeros(3), 1.0))

    with pytest.raises(SiteError) as error:
        run(model)
    assert str(error.value).startswith(
        "site 'x' inside plate 'data' (size 100, dim -1) has batch shape (3,); expected a "
        "shape broadcastable to (100,)."
    )
    assert error.value.site == "x"


def test_observation_whose_shape_does_not_broadcast() -> None:
    def model() -> None:
        with plait.plate("data", 4, dim=-2):
            plait.sample("y", dist.Normal(0.0, 1.0), obs=jnp.zeros((3, 1)))

    with pytest.raises(
        SiteError,
        match=re.escape(
            "site 'y' inside plate 'data' (size 4, dim -2) observes a value of shape (3, 1), "
            "which does not broadcast with the site's shape (4, 1)"
        ),
    ):
        run(model)


def test_subsample_size_larger_than_size() -> None:
    with pytest.raises(
        SiteError,
        match=re.escape(
            "plate 'data' has subsample_size=5, which must be between 1 and the plate's size 3"
        ),
    ):
        plait.plate("data", 3, subsample_size=5)


@pytest.mark.parametrize("bad", [0, -2, 2.5])
def test_plate_size_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(SiteError, match=re.escape("plate 'p' needs a positive integer size")):
        plait.plate("p", bad)  # type: ignore[arg-type]


def test_plate_dim_must_be_negative() -> None:
    with pytest.raises(SiteError, match=re.escape("plate 'p' got dim=0")):
        plait.plate("p", 3, dim=0)


def test_non_boolean_mask() -> None:
    with pytest.raises(
        HandlerError, match=re.escape("mask() needs a boolean mask, got dtype float32")
    ):
        mask(mask=jnp.ones(3))
    with (
        pytest.raises(SiteError, match=re.escape("site 'y' got obs_mask of dtype int32")),
        seed(rng_seed=0),
    ):
        plait.sample("y", dist.Normal(0.0, 1.0), obs=jnp.zeros(2), obs_mask=jnp.ones(2, int))


@pytest.mark.parametrize("bad", [0.0, -1.0, jnp.array([1.0, -2.0])])
def test_non_positive_scale(bad: object) -> None:
    with pytest.raises(HandlerError, match=re.escape("scale() needs a positive scale")):
        scale(scale=bad)


def test_non_callable_passed_to_handler() -> None:
    with pytest.raises(
        HandlerError,
        match=re.escape("seed() wraps a model function, but got int (3), which is not callable"),
    ):
        seed(3, rng_seed=0)  # type: ignore[call-overload]


def test_substitute_needs_exactly_one_source() -> None:
    with pytest.raises(HandlerError, match=re.escape("substitute() takes exactly one of data")):
        substitute(data={"x": 1.0}, substitute_fn=lambda msg: None)


def test_bad_seed_type() -> None:
    with pytest.raises(HandlerError, match=re.escape("seed() needs an int")):
        seed(rng_seed="zero")  # type: ignore[call-overload]


def test_foreign_distribution_no_plugin_adapts() -> None:
    class NotADistribution:
        pass

    with pytest.raises(SiteError, match=re.escape("site 'z' got a ")) as error:
        run(lambda: plait.sample("z", NotADistribution()))
    assert "NotADistribution, which is not a distribution" in str(error.value)
    assert "no installed plait plugin adapts it" in str(error.value)


def test_param_of_wrong_size_in_subsampled_plate() -> None:
    def model() -> None:
        with plait.plate("data", 6, subsample_size=2):
            plait.param("w", jnp.zeros(5), event_dim=0)

    with pytest.raises(
        SiteError,
        match=re.escape(
            "inside plate 'data' (size 6, dim -1), param 'w' with event_dim=0 has shape (5,)"
        ),
    ):
        run(model)
