"""plait-enum's errors and limits against NumPyro's on the same input."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.funsor import config_enumerate as np_config
from numpyro.contrib.funsor import enum as np_enum
from numpyro.contrib.funsor import markov as np_markov

import plait
from plait import PlaitError
from plait.enum import config_enumerate, enum, markov


def _chain(sample: Any, markov_: Any) -> Any:
    def model() -> Any:
        return [
            jnp.shape(sample(f"x{i}", dist.Bernoulli(0.5)))
            for i in markov_(range(3), history=-1)
        ]

    return model


def test_a_negative_markov_history_means_no_memory_as_in_numpyro() -> None:
    theirs = np_enum(np_config(_chain(numpyro.sample, np_markov)), first_available_dim=-1)()
    ours = enum(config_enumerate(_chain(plait.sample, markov)), first_available_dim=-1)()
    assert ours == theirs == [(2,), (2,), (2,)]


def test_monte_carlo_enumeration_is_not_implemented_as_in_numpyro() -> None:
    def model(sample: Any) -> Any:
        return sample("x", dist.Bernoulli(0.5), infer={"enumerate": "parallel", "num_samples": 3})

    with pytest.raises(NotImplementedError):
        np_enum(lambda: model(numpyro.sample), -1)()
    with pytest.raises(NotImplementedError, match="site 'x' asks for num_samples=3") as ours:
        enum(lambda: model(plait.sample), first_available_dim=-1)()
    assert isinstance(ours.value, PlaitError)
