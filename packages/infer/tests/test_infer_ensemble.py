"""Ensemble samplers: the moves, and one ensemble step leaving the target invariant."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plait.infer._ensemble_step import (
    AIESState,
    ESSState,
    aies_update,
    ensemble_step,
    ess_update,
)
from plait.infer._moves import (
    DEMove,
    DifferentialMove,
    GaussianMove,
    KDEMove,
    RandomMove,
    StretchMove,
    nondiagonal_pairs,
)

MEAN = jnp.array([1.0, -2.0])
COV = jnp.array([[1.0, 0.8], [0.8, 2.0]])
PRECISION = jnp.linalg.inv(COV)
CHOL = jnp.linalg.cholesky(COV)


def log_density(z: Any) -> Any:
    """A correlated Gaussian, for one walker (``(2,)``) or a batch (``(n, 2)``)."""
    d = z - MEAN
    return -0.5 * jnp.einsum("...i,ij,...j->...", d, PRECISION, d)


def test_nondiagonal_pairs_are_every_ordered_pair_of_distinct_walkers() -> None:
    pairs = {tuple(p) for p in np.asarray(nondiagonal_pairs(5)).tolist()}
    assert pairs == {(i, j) for i in range(5) for j in range(5) if i != j}


def test_stretch_factor_has_density_proportional_to_one_over_sqrt_z() -> None:
    # z = (1 + (a-1) u)^2 / a, so P(Z <= z) = (sqrt(a z) - 1) / (a - 1) on [1/a, a].
    a, n = 2.0, 40_000
    active = jnp.zeros((n, 3))
    proposal, log_factor = StretchMove(a)(jax.random.key(0), active, jnp.ones((n, 3)))
    z = np.exp(np.asarray(log_factor) / 2.0)  # (D - 1) log z with D = 3
    np.testing.assert_allclose(
        np.asarray(proposal), np.broadcast_to(1 - z[:, None], (n, 3)), atol=1e-6
    )
    for q in (0.7, 1.0, 1.5):
        cdf = (np.sqrt(a * q) - 1) / (a - 1)
        assert abs(np.mean(z <= q) - cdf) < 4 * np.sqrt(cdf * (1 - cdf) / n)


def test_de_move_steps_along_the_difference_of_two_distinct_complementary_walkers() -> None:
    inactive = jnp.eye(4)[:4, :3] * jnp.arange(1.0, 5.0)[:, None]
    proposal, log_factor = DEMove(sigma=1e-5, g0=0.5)(
        jax.random.key(1), jnp.zeros((4, 3)), inactive
    )
    assert np.all(np.asarray(log_factor) == 0.0)
    steps = np.asarray(proposal) / 0.5
    # Each step is row j minus row i of `inactive` (i != j): two non-zero entries, or one
    # for the row of zeros beyond the third dimension.
    for row in steps:
        nonzero = np.flatnonzero(np.abs(row) > 1e-3)
        assert 1 <= nonzero.size <= 2


@pytest.mark.parametrize(
    "move",
    [DifferentialMove(), GaussianMove(), KDEMove(), RandomMove()],
    ids=lambda m: type(m).__name__,
)
def test_ess_moves_give_one_direction_per_walker_scaled_by_two_mu(move: Any) -> None:
    inactive = jax.random.normal(jax.random.key(2), (6, 2))
    small, large = move(jax.random.key(3), inactive, 0.5), move(jax.random.key(3), inactive, 1.0)
    assert small.shape == (6, 2)
    np.testing.assert_allclose(large, 2.0 * small, rtol=1e-6)


def aies(moves: list[Any]) -> Any:
    def update(active: Any, ld: Any, inactive: Any, state: AIESState) -> Any:
        return aies_update(
            active,
            ld,
            inactive,
            state,
            batch_log_density=log_density,
            moves=moves,
            weights=jnp.ones(len(moves)) / len(moves),
            num_warmup=0,
        )

    return update


def ess(moves: list[Any]) -> Any:
    def update(active: Any, ld: Any, inactive: Any, state: ESSState) -> Any:
        return ess_update(
            active,
            ld,
            inactive,
            state,
            logdensity_fn=log_density,
            moves=moves,
            weights=jnp.ones(len(moves)) / len(moves),
            max_steps=100,
            max_iter=100,
            tune_mu=True,
        )

    return update


def first_state(kind: str, key: Any) -> Any:
    if kind == "aies":
        return AIESState(jnp.array(0.0), jnp.array(0.0), jnp.array(0.0), key)
    return ESSState(jnp.array(0.0), jnp.array(0), jnp.array(0), jnp.array(1.0), key)


@pytest.mark.parametrize(
    ("kind", "moves"),
    [
        ("aies", [DEMove()]),
        ("aies", [StretchMove()]),
        ("ess", [DifferentialMove()]),
        ("ess", [GaussianMove(), KDEMove(), RandomMove()]),
    ],
    ids=["aies-de", "aies-stretch", "ess-differential", "ess-gaussian-kde-random"],
)
def test_one_ensemble_step_leaves_the_target_invariant(kind: str, moves: list[Any]) -> None:
    # Draw the whole ensemble from the target (independently for each of many keys),
    # take one step: every walker is still distributed as the target.
    num_ensembles, walkers = 3000, 8
    update = aies(moves) if kind == "aies" else ess(moves)

    def one(key: Any) -> Any:
        k_draw, k_inner, k_step = jax.random.split(key, 3)
        z = MEAN + jax.random.normal(k_draw, (walkers, 2)) @ CHOL.T
        new, ld, inner = ensemble_step(
            k_step, z, log_density(z), first_state(kind, k_inner), update, randomize_split=True
        )
        return z, new, ld, inner

    z, new, ld, inner = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(4), num_ensembles))
    np.testing.assert_allclose(ld, log_density(new), rtol=1e-4, atol=1e-4)
    assert np.all(np.asarray(inner.i) == 1.0)
    assert float(jnp.mean(jnp.any(new != z, axis=-1))) > 0.2  # the walkers moved
    draws = np.asarray(new, np.float64).reshape(-1, 2)
    n = draws.shape[0] / 4  # walkers of one ensemble are correlated: a conservative count
    se_mean = np.sqrt(np.diag(np.asarray(COV)) / n)
    assert np.all(np.abs(draws.mean(0) - np.asarray(MEAN)) < 4 * se_mean)
    cov = np.asarray(COV)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.all(np.abs(np.cov(draws, rowvar=False) - cov) < 4 * se_cov)


def test_ess_tunes_mu_from_expansions_and_contractions_after_a_whole_step() -> None:
    z = MEAN + jax.random.normal(jax.random.key(5), (8, 2)) @ CHOL.T
    ld = log_density(z)

    def halves(tune_mu: bool) -> Any:
        def two(s: ESSState) -> Any:
            kwargs = {
                "logdensity_fn": log_density,
                "moves": [DifferentialMove()],
                "weights": jnp.ones(1),
                "max_steps": 100,
                "max_iter": 100,
                "tune_mu": tune_mu,
            }
            first = ess_update(z[:4], ld[:4], z[4:], s, **kwargs)[2]
            return first, ess_update(z[4:], ld[4:], z[:4], first, **kwargs)[2]

        return jax.jit(two)(first_state("ess", jax.random.key(6)))

    first, tuned = halves(True)
    _, counted = halves(False)  # the same draws, counts kept
    assert float(first.mu) == 1.0 and int(first.n_expansions) + int(first.n_contractions) > 0
    expansions = max(1, int(counted.n_expansions))
    np.testing.assert_allclose(
        float(tuned.mu), 2.0 * expansions / (expansions + int(counted.n_contractions)), rtol=1e-6
    )
    assert int(tuned.n_expansions) == int(tuned.n_contractions) == 0
