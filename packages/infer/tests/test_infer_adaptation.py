"""Warm-up adaptation against NumPyro's own (numpyro/infer/hmc_util.py): the same
schedule, dual averaging, Welford estimate and window logic, number for number."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import hmc_util as nu

from plait.infer import _adaptation as ad
from plait.infer._hmc import _find_reasonable_step_size

DENSE_LAYOUTS: list[Any] = [False, True, [("a",)], [("a", "b")], [("b",), ("a",)]]


def assert_trees_equal(ours: Any, theirs: Any, rtol: float = 0.0) -> None:
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=0)


@pytest.mark.parametrize("num_steps", [0, 1, 19, 20, 50, 149, 150, 151, 300, 1000, 1234])
def test_schedule_is_numpyros(num_steps: int) -> None:
    ours = [tuple(w) for w in ad.build_adaptation_schedule(num_steps)]
    assert ours == [tuple(w) for w in nu.build_adaptation_schedule(num_steps)]


def test_dual_averaging_is_numpyros() -> None:
    ours_init, ours_update = ad.dual_averaging()
    theirs_init, theirs_update = nu.dual_averaging()
    ours, theirs = ours_init(jnp.log(10.0)), theirs_init(jnp.log(10.0))
    for g in np.random.default_rng(0).normal(size=30).astype(np.float32):
        ours, theirs = ours_update(g, ours), theirs_update(g, theirs)
    assert_trees_equal(tuple(ours), tuple(theirs), rtol=1e-6)


@pytest.mark.parametrize("diagonal", [True, False])
@pytest.mark.parametrize("regularize", [True, False])
def test_welford_is_numpyros(diagonal: bool, regularize: bool) -> None:
    ours_fns = ad.welford_covariance(diagonal=diagonal)
    theirs_fns = nu.welford_covariance(diagonal=diagonal)
    ours, theirs = ours_fns[0](3), theirs_fns[0](3)
    for x in np.random.default_rng(1).normal(size=(20, 3)).astype(np.float32):
        ours, theirs = ours_fns[1](jnp.asarray(x), ours), theirs_fns[1](jnp.asarray(x), theirs)
    assert_trees_equal(
        ours_fns[2](ours, regularize=regularize), theirs_fns[2](theirs, regularize=regularize), 1e-6
    )


def _position(rng: np.random.Generator) -> dict[str, jax.Array]:
    return {
        "a": jnp.asarray(rng.normal(size=2) * 3.0, jnp.float32),
        "b": jnp.asarray(rng.normal(size=3) * 0.5, jnp.float32),
    }


def _flat(z: dict[str, jax.Array]) -> jax.Array:
    return jnp.concatenate([z["a"], z["b"]])


@pytest.mark.parametrize("dense_mass", DENSE_LAYOUTS, ids=str)
def test_warmup_adapter_is_numpyros_step_for_step(dense_mass: Any) -> None:
    """150 warm-up steps (start buffer, three slow windows, end buffer) on the same
    acceptance rates and positions give NumPyro's step size and mass matrices exactly."""
    num_warmup = 150
    blocks = not isinstance(dense_mass, bool)
    prepare = (lambda z: z) if blocks else _flat
    ours_init, ours_update = ad.warmup_adapter(num_warmup, dense_mass=dense_mass)
    theirs_init, theirs_update = nu.warmup_adapter(num_warmup, dense_mass=dense_mass)
    rng = np.random.default_rng(0)
    z0 = prepare({"a": jnp.zeros(2), "b": jnp.zeros(3)})
    key = jax.random.key(1)
    ours = ours_init((z0, None, None, None), key, 0.5)
    theirs = theirs_init((z0, None, None, None), key, 0.5)
    ours_step, theirs_step = jax.jit(ours_update), jax.jit(theirs_update)
    for t in range(num_warmup):
        accept = jnp.asarray(np.clip(rng.normal(0.8, 0.15), 0.0, 1.0), jnp.float32)
        z = prepare(_position(rng))
        ours = ours_step(jnp.asarray(t), accept, (z, None, None, None), ours)
        theirs = theirs_step(jnp.asarray(t), accept, (z, None, None, None), theirs)
    for field in ("step_size", "inverse_mass_matrix", "mass_matrix_sqrt", "mass_matrix_sqrt_inv"):
        assert_trees_equal(getattr(ours, field), getattr(theirs, field), rtol=1e-6)
    assert int(ours.window_idx) == int(theirs.window_idx)


@pytest.mark.parametrize(
    ("given", "dense_mass"),
    [
        (None, [("a", "b")]),
        (jnp.array([1.0, 2.0, 3.0, 4.0, 5.0]), []),
        ({("a",): jnp.array([[2.0, 0.5], [0.5, 1.0]])}, [("a",)]),
        ({("b",): jnp.array([1.0, 2.0, 3.0])}, [("a",)]),
    ],
    ids=["dense-identity", "array-given", "dense-block-given", "diagonal-block-given"],
)
def test_initial_mass_matrix_layout_is_numpyros(given: Any, dense_mass: Any) -> None:
    z = {"a": jnp.zeros(2), "b": jnp.zeros(3)}
    ours = ad.initialize_mass_matrix(z, given, dense_mass)
    theirs = nu._initialize_mass_matrix(
        z, None if given is None else dict(given) if isinstance(given, dict) else given, dense_mass
    )
    for mine, numpyros in zip(ours, theirs, strict=True):
        assert set(mine) == set(numpyros)
        for names in mine:
            np.testing.assert_allclose(mine[names], numpyros[names], rtol=1e-6)


def test_a_block_naming_an_unknown_site_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"names \['c'\], which are not latent sites"):
        ad.initialize_mass_matrix({"a": jnp.zeros(2)}, None, [("a", "c")])


def test_step_size_heuristic_is_numpyros() -> None:
    def potential(z: dict[str, jax.Array]) -> jax.Array:
        return 0.5 * jnp.sum((z["x"] / jnp.array([0.1, 1.0, 5.0])) ** 2)

    z = {"x": jnp.array([0.3, -1.0, 2.0])}
    pe, grad = jax.value_and_grad(potential)(z)
    imm = jnp.ones(3)
    key = jax.random.key(3)
    ours = _find_reasonable_step_size(
        potential, None, False, jnp.asarray(1.0), imm, (z, None, pe, grad), key
    )
    from numpyro.infer.hmc import momentum_generator

    theirs = nu.find_reasonable_step_size(
        potential,
        nu.euclidean_kinetic_energy,
        momentum_generator,
        1.0,
        imm,
        (z, None, pe, grad),
        key,
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
