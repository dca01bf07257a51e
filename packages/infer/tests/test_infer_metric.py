"""The BlackJAX metric built from NumPyro's mass-matrix layout, against NumPyro's own
momentum draws, kinetic energy and U-turn check."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from numpyro.infer.hmc import momentum_generator
from numpyro.infer.hmc_util import _is_turning, euclidean_kinetic_energy

from plait.infer import _adaptation as ad
from plait.infer._metric import euclidean_metric, forward_mode_logdensity

Z = {"a": jnp.array([0.1, -0.3]), "b": jnp.array([[1.0, 2.0], [0.5, -1.0]])}
COV = jnp.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]])


def layouts() -> list[Any]:
    """Inverse mass matrices as NumPyro holds them: flat diagonal, flat dense, blocks."""
    return [
        ad.initialize_mass_matrix(Z, jnp.arange(1.0, 7.0), False),
        ad.initialize_mass_matrix(Z, jnp.eye(6) + 0.1, True),
        ad.initialize_mass_matrix(Z, {("a",): jnp.array([[1.0, 0.4], [0.4, 2.0]])}, [("a",)]),
        ad.initialize_mass_matrix(Z, {("b",): jnp.arange(1.0, 5.0)}, [("a",)]),
    ]


def tree(x: jax.Array) -> Any:
    return ravel_pytree(Z)[1](x)


@pytest.mark.parametrize("layout", layouts(), ids=["diag", "dense", "dense-block", "mixed"])
def test_momentum_kinetic_energy_and_uturn_are_numpyros(layout: Any) -> None:
    imm, sqrt, sqrt_inv = layout
    metric = euclidean_metric(imm, sqrt, sqrt_inv, Z)
    key = jax.random.key(0)
    r = metric.sample_momentum(key, Z)
    theirs_r = momentum_generator(Z, sqrt, key)
    np.testing.assert_allclose(ravel_pytree(r)[0], ravel_pytree(theirs_r)[0], rtol=1e-6)
    np.testing.assert_allclose(
        metric.kinetic_energy(r), euclidean_kinetic_energy(imm, r), rtol=1e-6
    )
    rng = np.random.default_rng(0)
    for _ in range(20):
        left, right, total = (tree(jnp.asarray(rng.normal(size=6), jnp.float32)) for _ in range(3))
        expected = bool(_is_turning(imm, left, right, total))
        assert bool(metric.check_turning(left, right, total)) == expected
        # BlackJAX's iterative U-turn check hands over flattened momenta.
        flat = [ravel_pytree(m)[0] for m in (left, right, total)]
        assert bool(metric.check_turning(*flat)) == expected


def test_momentum_covariance_is_the_mass_matrix() -> None:
    """Draws of r have covariance M = (M^-1)^-1, with a dense inverse mass matrix."""
    imm, sqrt, sqrt_inv = ad.initialize_mass_matrix(jnp.zeros(3), COV, True)
    metric = euclidean_metric(imm, sqrt, sqrt_inv, jnp.zeros(3))
    draws = jax.vmap(lambda k: metric.sample_momentum(k, jnp.zeros(3)))(
        jax.random.split(jax.random.key(1), 40000)
    )
    np.testing.assert_allclose(np.cov(np.asarray(draws).T), np.linalg.inv(COV), atol=0.05)


def test_forward_mode_gradient_equals_reverse_mode() -> None:
    def logdensity(z: dict[str, jax.Array]) -> jax.Array:
        return -jnp.sum(z["a"] ** 2) + jnp.sum(jnp.sin(z["b"]))

    value, grad = jax.value_and_grad(forward_mode_logdensity(logdensity))(Z)
    expected_value, expected_grad = jax.value_and_grad(logdensity)(Z)
    np.testing.assert_allclose(value, expected_value, rtol=1e-6)
    for k in Z:
        np.testing.assert_allclose(grad[k], expected_grad[k], rtol=1e-6)
