"""Discrete Metropolis-within-Gibbs updates and the Mixed HMC step: each leaves its
target invariant (one step from exact draws, over many keys), checked against the
target's exact (enumerated) probabilities."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from blackjax.mcmc.metrics import gaussian_euclidean

from plait.infer._discrete import discrete_gibbs_sweep, select_discrete_proposal
from plait.infer._mixed_hmc_step import mixed_hmc_step

# Two coupled discrete coordinates with three values each: log p(a, b).
LOGITS = jnp.array([[0.2, -1.0, 0.5], [1.1, 0.0, -0.4], [-0.7, 0.3, 0.9]])
PROBS = np.exp(np.asarray(LOGITS, np.float64) - np.logaddexp.reduce(np.asarray(LOGITS).ravel()))


def potential(z: dict[str, Any]) -> Any:
    return -LOGITS[z["ab"][0], z["ab"][1]]


PROPOSALS = [(False, False), (False, True), (True, False), (True, True)]
IDS = ["gibbs", "modified-gibbs", "random-walk", "modified-random-walk"]


def frequencies(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    counts = np.zeros((3, 3))
    np.add.at(counts, (a, b), 1.0)
    return counts / a.size


@pytest.mark.parametrize(("random_walk", "modified"), PROPOSALS, ids=IDS)
def test_a_sweep_leaves_the_discrete_target_invariant(random_walk: bool, modified: bool) -> None:
    proposal = select_discrete_proposal(random_walk, modified)
    n = 40_000

    def one(key: Any) -> Any:
        k_draw, k_sweep = jax.random.split(key)
        flat = jax.random.categorical(k_draw, LOGITS.ravel())
        z = {"ab": jnp.stack([flat // 3, flat % 3]).astype(jnp.int32)}
        new, pe = discrete_gibbs_sweep(
            k_sweep, z, potential(z), potential, jnp.array([3, 3]), proposal
        )
        return z["ab"], new["ab"], pe

    start, end, pe = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(0), n))
    np.testing.assert_allclose(pe, jax.vmap(lambda ab: potential({"ab": ab}))(end), rtol=1e-6)
    assert np.mean(np.any(np.asarray(start) != np.asarray(end), axis=1)) > 0.3
    freq = frequencies(np.asarray(end[:, 0]), np.asarray(end[:, 1]))
    assert np.all(np.abs(freq - PROBS) < 4.5 * np.sqrt(PROBS * (1 - PROBS) / n))


@pytest.mark.parametrize(("random_walk", "modified"), PROPOSALS, ids=IDS)
def test_a_gibbs_update_of_one_coordinate_draws_its_conditional(
    random_walk: bool, modified: bool
) -> None:
    # One coordinate: after a Gibbs update the value is an exact draw from p(b | a = 1)
    # whatever it was; the Metropolis variants keep p(b | a = 1) invariant.
    proposal = select_discrete_proposal(random_walk, modified)
    conditional = PROBS[1] / PROBS[1].sum()
    n = 40_000

    def pe(z: dict[str, Any]) -> Any:
        return -LOGITS[1, z["b"]]

    def one(key: Any) -> Any:
        k_draw, k_sweep = jax.random.split(key)
        start = jax.random.categorical(k_draw, jnp.log(jnp.asarray(conditional, jnp.float32)))
        if not (random_walk or modified):
            start = jnp.zeros((), jnp.int32)  # Gibbs forgets where it starts
        z = {"b": start.astype(jnp.int32)}
        return discrete_gibbs_sweep(k_sweep, z, pe(z), pe, jnp.array([3]), proposal)[0]["b"]

    draws = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(1), n)))
    freq = np.bincount(draws, minlength=3) / n
    assert np.all(np.abs(freq - conditional) < 4.5 * np.sqrt(conditional * (1 - conditional) / n))


# A mixture: c ~ Categorical(W), x | c ~ Normal(LOCS[c], SCALE); p(c, x) is exact.
W = jnp.array([0.15, 0.3, 0.3, 0.25])
LOCS = jnp.array([-2.0, 0.0, 2.0, 4.0])
SCALE = 0.5


def joint_potential(x: Any, d: dict[str, Any]) -> Any:
    c = d["c"]
    return -(jnp.log(W[c]) - 0.5 * ((x - LOCS[c]) / SCALE) ** 2)


@pytest.mark.parametrize("modified", [False, True], ids=["gibbs", "modified-gibbs"])
def test_a_mixed_hmc_step_leaves_the_joint_target_invariant(modified: bool) -> None:
    n = 20_000

    def one(key: Any) -> Any:
        k_c, k_x, k_step = jax.random.split(key, 3)
        c = jax.random.categorical(k_c, jnp.log(W)).astype(jnp.int32)
        x = LOCS[c] + SCALE * jax.random.normal(k_x)
        d = {"c": c}
        pe, grad = jax.value_and_grad(joint_potential)(x, d)
        out = mixed_hmc_step(
            k_step, x, d, pe, grad, joint_potential,
            step_size=jnp.array(0.25), metric=gaussian_euclidean(jnp.ones(1)),
            trajectory_length=1.2,
            support_sizes=np.array([4]), num_discrete_updates=5,
            proposal_fn=select_discrete_proposal(False, modified),
        )  # fmt: skip
        return c, out

    c0, out = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(2), n))
    np.testing.assert_allclose(
        out.potential_energy, jax.vmap(joint_potential)(out.z, out.z_discrete), rtol=1e-4, atol=1e-4
    )
    assert np.mean(np.asarray(out.z_discrete["c"]) != np.asarray(c0)) > 0.1
    assert 0.5 < float(jnp.mean(out.accept_prob)) <= 1.0
    freq = np.bincount(np.asarray(out.z_discrete["c"]), minlength=4) / n
    probs = np.asarray(W, np.float64)
    assert np.all(np.abs(freq - probs) < 4.5 * np.sqrt(probs * (1 - probs) / n))
    x = np.asarray(out.z, np.float64)
    mean = float(np.sum(probs * np.asarray(LOCS)))
    var = float(np.sum(probs * (np.asarray(LOCS) ** 2 + SCALE**2)) - mean**2)
    assert abs(x.mean() - mean) < 4.5 * np.sqrt(var / n)
    assert abs(x.var() - var) < 4.5 * var * np.sqrt(2 / n) * 2  # the mixture has heavy shoulders
