"""The last carry of an enumerated ``scan`` has NumPyro's enumeration dims: those of the
equivalent ``markov`` loop (issue 12, item 8), checked against NumPyro itself."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.control_flow import scan as np_scan
from numpyro.contrib.funsor import config_enumerate as np_config
from numpyro.contrib.funsor import enum as np_enum

import plait
from plait.control_flow import scan as pl_scan
from plait.enum import config_enumerate, enum

TRANS = jnp.array([[0.8, 0.15, 0.05], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
MEANS = jnp.array([-1.0, 0.5, 2.0])


def _model(sample: Any, scan: Any, history: int, two_sites: bool, reverse: bool) -> Any:
    def model(T: int) -> Any:
        def step(carry: Any, _: Any) -> Any:
            lags = carry if history > 1 else (carry,)
            probs = sum(TRANS[lag] for lag in lags) / len(lags)
            x = sample("x", dist.Categorical(probs))
            level = MEANS[x]
            if two_sites:
                w = sample("w", dist.Categorical(TRANS[x]))
                level = level + MEANS[w]
            new = (*lags[1:], x) if history > 1 else x
            return new, level

        init = tuple([0] * history) if history > 1 else 0
        last, _ = scan(step, init, None, length=T, history=history, reverse=reverse)
        return last

    return model


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("two_sites", [False, True])
@pytest.mark.parametrize("history", [1, 2, 3])
def test_last_carry_has_numpyros_enumeration_dims(
    history: int, two_sites: bool, reverse: bool
) -> None:
    for T in range(1, 2 * history + 4):
        theirs = np_enum(
            np_config(_model(numpyro.sample, np_scan, history, two_sites, reverse)),
            first_available_dim=-1,
        )(T)
        ours = enum(
            config_enumerate(_model(plait.sample, pl_scan, history, two_sites, reverse)),
            first_available_dim=-1,
        )(T)
        for a, b in zip(jax.tree_util.tree_leaves(theirs), jax.tree_util.tree_leaves(ours),
                        strict=True):
            assert jnp.shape(a) == jnp.shape(b), (T, jnp.shape(a), jnp.shape(b))
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
