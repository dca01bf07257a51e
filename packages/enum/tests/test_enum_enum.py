"""``enum``, ``config_enumerate`` and ``markov``: values, dims, recycling, errors."""

from __future__ import annotations

import re
from typing import Any

import jax.numpy as jnp
import numpyro.distributions as dist
import pytest

from plait import plate, sample
from plait.enum import config_enumerate, enum, markov
from plait.errors import HandlerError, SiteError
from plait.handlers import seed, trace


def test_enumerated_site_gets_its_support_left_of_the_plates() -> None:
    def model() -> Any:
        with plate("a", 5), plate("b", 2):
            return sample("z", dist.Categorical(jnp.ones(3) / 3), infer={"enumerate": "parallel"})

    z = enum(model, first_available_dim=-3)()
    assert z.shape == (3, 1, 1)
    assert z.ravel().tolist() == [0, 1, 2]


def test_support_values_are_the_distributions_own() -> None:
    def model() -> Any:
        return sample("z", dist.DiscreteUniform(3, 5), infer={"enumerate": "parallel"})

    assert enum(model)().tolist() == [3, 4, 5]


def test_first_available_dim_defaults_left_of_the_first_sites_plates() -> None:
    def model() -> Any:
        with plate("data", 4, dim=-2):
            return sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})

    assert enum(model)().shape == (2, 1, 1)


def test_two_sites_take_two_dims() -> None:
    def model() -> Any:
        a = sample("a", dist.Bernoulli(0.5))
        b = sample("b", dist.Bernoulli(0.5))
        return a.shape, b.shape

    assert enum(config_enumerate(model))() == ((2,), (2, 1))


def test_config_enumerate_keeps_an_explicit_choice_and_skips_observed_and_continuous() -> None:
    def model() -> None:
        sample("kept", dist.Bernoulli(0.5), infer={"enumerate": None})
        sample("marked", dist.Bernoulli(0.5))
        sample("observed", dist.Bernoulli(0.5), obs=1.0)
        sample("continuous", dist.Normal(0.0, 1.0))

    tr = trace(seed(config_enumerate(model), rng_seed=0)).get_trace()
    assert tr["kept"].infer == {"enumerate": None}
    assert tr["marked"].infer == {"enumerate": "parallel"}
    assert tr["observed"].infer == {}
    assert tr["continuous"].infer == {}


def test_config_enumerate_as_decorator() -> None:
    @config_enumerate
    def model() -> None:
        sample("z", dist.Bernoulli(0.5))

    assert trace(enum(model)).get_trace()["z"].value.shape == (2,)


def test_markov_iteration_alternates_two_dims() -> None:
    def model() -> list[tuple[int, ...]]:
        shapes = []
        for t in markov(range(5)):
            shapes.append(sample(f"z_{t}", dist.Bernoulli(0.5)).shape)
        return shapes

    assert enum(config_enumerate(model))() == [(2,), (2, 1)] * 2 + [(2,)]


def test_markov_history_two_cycles_three_dims() -> None:
    def model() -> list[tuple[int, ...]]:
        return [sample(f"z_{t}", dist.Bernoulli(0.5)).shape for t in markov(range(6), history=2)]

    assert enum(config_enumerate(model))() == [(2,), (2, 1), (2, 1, 1)] * 2


def test_nested_markov_contexts_alternate() -> None:
    def model() -> list[tuple[int, ...]]:
        shapes = []
        with markov():
            shapes.append(sample("v1", dist.Bernoulli(0.5)).shape)
            with markov():
                shapes.append(sample("v2", dist.Bernoulli(0.5)).shape)
                with markov():
                    shapes.append(sample("v3", dist.Bernoulli(0.5)).shape)
                    with markov():
                        shapes.append(sample("v4", dist.Bernoulli(0.5)).shape)
        return shapes

    assert enum(config_enumerate(model))() == [(2,), (2, 1), (2,), (2, 1)]


def test_global_site_stays_visible_inside_markov() -> None:
    def model() -> list[tuple[int, ...]]:
        g = sample("g", dist.Bernoulli(0.5))
        shapes = [g.shape]
        for t in markov(range(4)):
            shapes.append(sample(f"z_{t}", dist.Bernoulli(0.5)).shape)
        return shapes

    assert enum(config_enumerate(model))() == [(2,), (2, 1), (2, 1, 1), (2, 1), (2, 1, 1)]


def test_markov_outside_enum_does_nothing() -> None:
    def model() -> list[Any]:
        return [sample(f"z_{t}", dist.Bernoulli(0.5)) for t in markov(range(3))]

    assert [z.shape for z in seed(model, rng_seed=0)()] == [(), (), ()]


def test_enumerating_a_continuous_site_names_the_site() -> None:
    def model() -> None:
        sample("mu", dist.Normal(0.0, 1.0), infer={"enumerate": "parallel"})

    with pytest.raises(SiteError, match=re.escape("site 'mu' asks for enumeration")):
        enum(model)()


def test_running_out_of_dims_names_the_site() -> None:
    def model() -> None:
        for t in range(30):
            sample(f"z_{t}", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})

    with pytest.raises(SiteError, match=re.escape("site 'z_25': ran out of dims")):
        enum(model)()


def test_plate_on_an_enumeration_dim_is_refused() -> None:
    # The sizes agree, so without the check z's values would silently pair with the plate.
    def model() -> None:
        z = sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
        with plate("a", 2):
            sample("x", dist.Normal(z, 1.0), obs=jnp.zeros(2))

    with pytest.raises(SiteError, match=re.escape("site 'x' is inside plate 'a' (dim -1)")):
        enum(model, first_available_dim=-1)()


def test_enumerated_site_with_batch_dims_outside_plates_is_refused() -> None:
    def model() -> None:
        sample("z", dist.Bernoulli(jnp.full(3, 0.5)), infer={"enumerate": "parallel"})

    with pytest.raises(SiteError, match=re.escape("site 'z' has batch shape (3,)")):
        enum(model)()


def test_bad_first_available_dim() -> None:
    with pytest.raises(HandlerError, match="negative"):
        enum(first_available_dim=0)
