"""Tensor variable elimination over plates, against closed forms, brute force and NumPyro."""

from __future__ import annotations

import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.funsor import config_enumerate as np_config
from numpyro.contrib.funsor import enum as np_enum
from numpyro.contrib.funsor import log_density as np_log_density

import plait
from plait import hooks, plate, sample
from plait.enum import config_enumerate, enum, log_density, markov
from plait.errors import PlaitError
from plait.handlers import mask, scale

RTOL = 1e-5


def normal_lp(loc: Any, y: Any) -> Any:
    return -0.5 * (np.asarray(y) - loc) ** 2 - 0.5 * np.log(2 * np.pi)


WEIGHTS = np.array([0.2, 0.5, 0.3])
MEANS = np.array([-2.0, 0.0, 3.0])
DATA = np.array([-1.5, 0.3, 2.2, 3.1, -2.4])


def gmm(sample: Any, plate: Any, data: Any) -> None:
    with plate("data", len(data)):
        z = sample("z", dist.Categorical(jnp.asarray(WEIGHTS, jnp.float32)))
        sample("y", dist.Normal(jnp.asarray(MEANS, jnp.float32)[z], 1.0), obs=data)


def gmm_exact(data: np.ndarray) -> float:
    per_point = np.logaddexp.reduce(np.log(WEIGHTS)[:, None] + normal_lp(MEANS[:, None], data), 0)
    return float(per_point.sum())


def test_mixture_in_a_plate_matches_closed_form_and_numpyro() -> None:
    data = jnp.asarray(DATA, jnp.float32)
    actual, tr = log_density(config_enumerate(lambda d: gmm(sample, plate, d)), (data,))
    np.testing.assert_allclose(actual, gmm_exact(DATA), rtol=RTOL)
    assert tr["z"].value.shape == (3, 1)
    expected = np_log_density(
        np_enum(np_config(lambda d: gmm(numpyro.sample, numpyro.plate, d)), -2), (data,), {}, {}
    )[0]
    np.testing.assert_allclose(actual, expected, rtol=RTOL)


def nested(data: Any) -> None:
    """A global z, a local w per plate 'a' element depending on z, observations in a x b."""
    probs_w = jnp.array([[0.9, 0.1], [0.3, 0.7]])
    z = sample("z", dist.Bernoulli(0.4))
    with plate("a", data.shape[1], dim=-1):
        w = sample("w", dist.Categorical(probs_w[z]))
        with plate("b", data.shape[0], dim=-2):
            sample("y", dist.Normal(2.0 * w - z, 1.0), obs=data)


def test_nested_plates_match_brute_force() -> None:
    data = np.asarray(jax.random.normal(jax.random.key(0), (4, 3)))
    probs_w = np.array([[0.9, 0.1], [0.3, 0.7]])
    total = []
    for z in (0, 1):
        lp = np.log([0.6, 0.4][z])
        for a in range(3):
            lp += np.logaddexp.reduce(
                [np.log(probs_w[z, w]) + normal_lp(2.0 * w - z, data[:, a]).sum() for w in (0, 1)]
            )
        total.append(lp)
    actual = log_density(config_enumerate(nested), (jnp.asarray(data, jnp.float32),))[0]
    np.testing.assert_allclose(actual, np.logaddexp.reduce(total), rtol=RTOL)


def test_subsampled_plate_scales_the_marginal_not_the_factors() -> None:
    data = jnp.asarray(DATA, jnp.float32)

    def model(data: Any) -> None:
        with plate("data", 20, subsample_size=5) as idx:
            z = sample("z", dist.Categorical(jnp.asarray(WEIGHTS, jnp.float32)))
            sample("y", dist.Normal(jnp.asarray(MEANS, jnp.float32)[z], 1.0), obs=data[idx % 5])

    actual = log_density(config_enumerate(model), (data,), params={"data": jnp.arange(5)})[0]
    np.testing.assert_allclose(actual, 4.0 * gmm_exact(DATA), rtol=RTOL)


def test_masked_observations_drop_out_of_the_marginal() -> None:
    data = jnp.asarray(DATA, jnp.float32)
    keep = jnp.array([True, False, True, True, False])

    def model(data: Any) -> None:
        with plate("data", 5), mask(mask=keep):
            z = sample("z", dist.Categorical(jnp.asarray(WEIGHTS, jnp.float32)))
            sample("y", dist.Normal(jnp.asarray(MEANS, jnp.float32)[z], 1.0), obs=data)

    # A masked point contributes log Σ_z 1 = log 3 (NumPyro and Pyro do the same).
    expected = gmm_exact(DATA[np.asarray(keep)]) + 2 * np.log(3.0)
    np.testing.assert_allclose(
        log_density(config_enumerate(model), (data,))[0], expected, rtol=RTOL
    )


def test_scale_handler_multiplies_each_factor() -> None:
    data = jnp.asarray(DATA[:1], jnp.float32)
    model = scale(config_enumerate(lambda d: gmm(sample, plate, d)), scale=0.5)
    expected = np.logaddexp.reduce(0.5 * (np.log(WEIGHTS) + normal_lp(MEANS, DATA[0])))
    np.testing.assert_allclose(log_density(model, (data,))[0], expected, rtol=RTOL)


def chain(data: Any) -> None:
    trans = jnp.array([[0.8, 0.2], [0.3, 0.7]])
    z = 0
    for t in markov(range(len(data))):
        z = sample(f"z_{t}", dist.Categorical(trans[z]))
        sample(f"y_{t}", dist.Normal(2.0 * z, 1.0), obs=data[t])


def test_markov_chain_matches_brute_force() -> None:
    data = np.asarray(jax.random.normal(jax.random.key(1), (7,)))
    trans = np.array([[0.8, 0.2], [0.3, 0.7]])
    total = []
    for path in itertools.product((0, 1), repeat=7):
        lp, prev = 0.0, 0
        for t, z in enumerate(path):
            lp += np.log(trans[prev, z]) + normal_lp(2.0 * z, data[t])
            prev = z
        total.append(lp)
    actual = log_density(config_enumerate(chain), (jnp.asarray(data, jnp.float32),))[0]
    np.testing.assert_allclose(actual, np.logaddexp.reduce(total), rtol=RTOL)


def test_jit_and_grad_match_closed_form() -> None:
    data = jnp.asarray(DATA, jnp.float32)

    def value(means: Any) -> Any:
        def model(data: Any) -> None:
            with plate("data", len(data)):
                z = sample("z", dist.Categorical(jnp.asarray(WEIGHTS, jnp.float32)))
                sample("y", dist.Normal(means[z], 1.0), obs=data)

        return log_density(config_enumerate(model), (data,))[0]

    v, g = jax.jit(jax.value_and_grad(value))(jnp.asarray(MEANS, jnp.float32))
    post = np.log(WEIGHTS)[:, None] + normal_lp(MEANS[:, None], DATA)
    post = np.exp(post - np.logaddexp.reduce(post, 0))
    expected_grad = (post * (DATA - MEANS[:, None])).sum(1)
    np.testing.assert_allclose(v, gmm_exact(DATA), rtol=RTOL)
    np.testing.assert_allclose(g, expected_grad, rtol=1e-4)


def test_hook_runs_the_model_once_and_sums_plain_models_plainly() -> None:
    data = jnp.asarray(DATA, jnp.float32)
    runs = []

    def plain(data: Any) -> None:
        runs.append(1)
        mu = sample("mu", dist.Normal(0.0, 1.0))
        with plate("data", len(data)):
            sample("y", dist.Normal(mu, 1.0), obs=data)

    from plait.enum._plugin import plait_log_density

    value, _ = plait_log_density(plain, (data,), {}, {"mu": 0.0})
    expected = normal_lp(0.0, 0.0) + normal_lp(0.0, DATA).sum()
    np.testing.assert_allclose(value, expected, rtol=RTOL)
    assert len(runs) == 1

    def counted(d: Any) -> None:
        runs.append(1)
        gmm(sample, plate, d)

    runs.clear()
    enumerated = config_enumerate(counted)
    answer = plait_log_density(enumerated, (data,), {}, {})
    np.testing.assert_allclose(answer[0], gmm_exact(DATA), rtol=RTOL)
    registered = hooks.log_density(enumerated, (data,), {}, {})
    assert registered is not None
    np.testing.assert_allclose(registered[0], gmm_exact(DATA), rtol=RTOL)
    assert len(runs) == 2  # one run per evaluation


def test_a_plate_deeper_than_the_guess_runs_again_once_then_is_remembered() -> None:
    data = np.asarray(jax.random.normal(jax.random.key(0), (4, 3)))
    runs = []

    def model(data: Any) -> None:
        runs.append(1)
        nested(data)

    enumerated = config_enumerate(model)
    first = log_density(enumerated, (jnp.asarray(data, jnp.float32),))[0]
    assert len(runs) == 3  # the guess (-1) fails at plate 'a', a plain run, the right run
    runs.clear()
    again = log_density(config_enumerate(model), (jnp.asarray(data, jnp.float32),))[0]
    assert len(runs) == 1
    np.testing.assert_allclose(first, again, rtol=1e-6)


def test_substituted_discrete_site_is_not_enumerated() -> None:
    data = jnp.asarray(DATA, jnp.float32)
    z = jnp.array([0, 1, 2, 2, 0])
    actual = log_density(
        config_enumerate(lambda d: gmm(sample, plate, d)), (data,), params={"z": z}
    )[0]
    expected = (np.log(WEIGHTS[z]) + normal_lp(MEANS[z], DATA)).sum()
    np.testing.assert_allclose(actual, expected, rtol=RTOL)


def test_variables_of_different_plates_meeting_inside_a_plate_are_refused() -> None:
    def model(lib: Any) -> None:
        with lib.plate("a", 2, dim=-1):
            u = lib.sample("u", dist.Bernoulli(0.5))
        with lib.plate("b", 3, dim=-2):
            v = lib.sample("v", dist.Bernoulli(0.5))
        with lib.plate("a", 2, dim=-1), lib.plate("b", 3, dim=-2):
            lib.sample("y", dist.Normal(u + v, 1.0), obs=jnp.zeros((3, 2)))

    with pytest.raises(ValueError, match="plate-wise elimination") as caught:
        log_density(enum(config_enumerate(lambda: model(plait)), first_available_dim=-3))
    assert isinstance(caught.value, PlaitError)

    # NumPyro + funsor raise the same class on the same model (with "intractable!").
    with pytest.raises(ValueError, match="intractable"):
        np_log_density(
            np_enum(np_config(lambda: model(numpyro)), first_available_dim=-3), (), {}, {}
        )


def test_model_without_sites_has_zero_density() -> None:
    assert float(log_density(lambda: None)[0]) == 0.0
