"""An enumerated ``Categorical`` scored from its log-probability table (no gather).

plait-enum scores NumPyro's ``CategoricalProbs``/``CategoricalLogits`` at their own
enumerated support by moving the table's last axis to the enumerated dim instead of
NumPyro's broadcast-and-gather. These tests check the numbers and gradients against
NumPyro+funsor and a brute-force sum, and that the gather is really gone.
"""

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
from plait.control_flow import scan
from plait.enum import config_enumerate, log_density

DATA = jnp.asarray([[0.4, -1.2, 2.5], [1.1, 0.2, -0.7]], jnp.float32)  # (b=2, a=3)
LOGITS = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)), jnp.float32)


def plated(sample: Any, plate: Any, logits: Any, use_probs: bool) -> None:
    """Per element of plate 'a' a state z in 0..3 with its own logits; y in a x b."""
    with plate("a", 3, dim=-1):
        fn = dist.Categorical(probs=jax.nn.softmax(logits)) if use_probs else None
        z = sample("z", fn if use_probs else dist.Categorical(logits=logits))
        with plate("b", 2, dim=-2):
            sample("y", dist.Normal(1.5 * z - 2.0, 1.0), obs=DATA)


def brute_force(logits: Any) -> float:
    log_p = jax.nn.log_softmax(np.asarray(logits, np.float64), -1)
    y = np.asarray(DATA, np.float64)
    total = 0.0
    for a in range(3):
        terms = [
            log_p[a, k] + np.sum(-0.5 * (y[:, a] - (1.5 * k - 2.0)) ** 2 - 0.5 * np.log(2 * np.pi))
            for k in range(4)
        ]
        total += float(np.logaddexp.reduce(terms))
    return total


@pytest.mark.parametrize("use_probs", [False, True])
def test_plated_categorical_matches_brute_force_and_numpyro_with_gradients(
    use_probs: bool,
) -> None:
    def plait_value(logits: Any) -> Any:
        model = config_enumerate(lambda: plated(plait.sample, plait.plate, logits, use_probs))
        return log_density(model, ())[0]

    def numpyro_value(logits: Any) -> Any:
        model = np_config(lambda: plated(numpyro.sample, numpyro.plate, logits, use_probs))
        return np_log_density(np_enum(model, -3), (), {}, {})[0]

    value, grad = jax.value_and_grad(plait_value)(LOGITS)
    expected, expected_grad = jax.value_and_grad(numpyro_value)(LOGITS)
    np.testing.assert_allclose(value, brute_force(LOGITS), rtol=1e-5)
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-6)
    # The table path scores z: no gather is left anywhere in the computation.
    assert "gather" not in str(jax.make_jaxpr(jax.value_and_grad(plait_value))(LOGITS))


def test_a_state_whose_probs_depend_on_another_enumerated_state_matches_brute_force() -> None:
    """z1 at one dim, z2 ~ Categorical(trans[z1]) at another: the table lands at z2's dim."""
    init = jnp.asarray([0.2, 0.5, 0.3], jnp.float32)
    trans = jax.nn.softmax(jnp.asarray(np.random.default_rng(1).normal(size=(3, 3)), jnp.float32))
    locs = jnp.asarray([-1.0, 0.5, 2.0], jnp.float32)

    def model() -> None:
        z1 = plait.sample("z1", dist.Categorical(init))
        z2 = plait.sample("z2", dist.Categorical(logits=jnp.log(trans)[z1]))
        plait.sample("y", dist.Normal(locs[z1] + locs[z2], 1.0), obs=0.7)

    expected = np.logaddexp.reduce(
        [
            np.log(init[i]) + np.log(trans[i, j]) - 0.5 * (0.7 - locs[i] - locs[j]) ** 2
            - 0.5 * np.log(2 * np.pi)
            for i, j in itertools.product(range(3), range(3))
        ]
    )
    np.testing.assert_allclose(log_density(config_enumerate(model), ())[0], expected, rtol=1e-5)


def test_an_enumerated_chain_in_a_scan_keeps_its_value_and_gradient() -> None:
    """The HMM of benchmarks/hmm.py at a small size, against the forward algorithm."""
    rng = np.random.default_rng(2)
    logits = jnp.asarray(rng.normal(size=(3, 3)), jnp.float32)
    means = jnp.asarray([-1.0, 0.0, 2.0], jnp.float32)
    ys = jnp.asarray(rng.normal(size=6), jnp.float32)

    def value(logits: Any) -> Any:
        trans = jax.nn.softmax(logits, -1)

        def step(x: Any, y: Any) -> Any:
            x = plait.sample("x", dist.Categorical(trans[x]), infer={"enumerate": "parallel"})
            plait.sample("y", dist.Normal(means[x], 1.0), obs=y)
            return x, None

        return log_density(lambda: scan(step, 0, ys), ())[0]

    def forward(logits: Any) -> Any:
        log_trans = jax.nn.log_softmax(logits, -1)
        emit = jax.scipy.stats.norm.logpdf(ys[:, None], means)
        alpha = log_trans[0] + emit[0]
        for t in range(1, len(ys)):
            alpha = jax.nn.logsumexp(alpha[:, None] + log_trans, 0) + emit[t]
        return jax.nn.logsumexp(alpha)

    actual, grad = jax.value_and_grad(value)(logits)
    expected, expected_grad = jax.value_and_grad(forward)(logits)
    np.testing.assert_allclose(actual, expected, rtol=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)
