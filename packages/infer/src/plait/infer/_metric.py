"""Euclidean metrics for BlackJAX's kernels from NumPyro's mass-matrix layout.

NumPyro keeps the inverse mass matrix and its square roots in the adaptation state (an
array, or a dict of blocks keyed by tuples of site names) so that no Cholesky runs per
transition. :func:`euclidean_metric` turns that layout into a BlackJAX ``Metric``
(momentum draws, kinetic energy, the generalised U-turn check, scaling), block by block,
so that block-diagonal mass matrices (``dense_mass=[("x", "y")]``) cost only their
blocks. A custom ``kinetic_fn(inverse_mass_matrix, r)`` (NumPyro's argument) replaces the
kinetic energy; its velocity is its gradient in ``r``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from blackjax.mcmc.metrics import Metric
from jax import Array, random
from jax.flatten_util import ravel_pytree

__all__ = ["euclidean_kinetic_energy", "euclidean_metric", "forward_mode_logdensity"]


def euclidean_kinetic_energy(inverse_mass_matrix: Any, r: Any) -> Array:
    """``r^T M^{-1} r / 2`` for a flat (1-D diagonal or 2-D dense) inverse mass matrix
    and a momentum pytree (NumPyro's ``euclidean_kinetic_energy``).

    Example:
        >>> float(euclidean_kinetic_energy(jnp.array([2.0]), {"x": jnp.array([3.0])}))
        9.0
    """
    flat, _ = ravel_pytree(r)
    velocity = (
        inverse_mass_matrix * flat
        if jnp.ndim(inverse_mass_matrix) == 1
        else inverse_mass_matrix @ flat
    )
    return 0.5 * jnp.dot(velocity, flat)


def _mv(matrix: Array, vector: Array) -> Array:
    return matrix * vector if matrix.ndim == 1 else matrix @ vector


def _mtv(matrix: Array, vector: Array) -> Array:
    return matrix * vector if matrix.ndim == 1 else matrix.T @ vector


class _Blocks:
    """Split a position pytree into the flat vectors of the mass-matrix blocks and back."""

    def __init__(self, inverse_mass_matrix: Any, prototype: Any) -> None:
        self.keyed = isinstance(inverse_mass_matrix, dict)
        self.names: list[Any] = list(inverse_mass_matrix) if self.keyed else [None]
        self.unravel = ravel_pytree(prototype)[1] if self.keyed else None

    def split(self, tree: Any) -> list[Array]:
        if not self.keyed:
            return [ravel_pytree(tree)[0]]
        if not isinstance(tree, dict):
            # BlackJAX's iterative U-turn check hands over flattened momenta.
            assert self.unravel is not None
            tree = self.unravel(tree)
        return [ravel_pytree(tuple(tree[k] for k in names))[0] for names in self.names]

    def join(self, like: Any, flats: list[Array]) -> Any:
        if not self.keyed:
            return ravel_pytree(like)[1](flats[0])
        out = dict(like)
        for names, flat in zip(self.names, flats, strict=True):
            _, unravel = ravel_pytree(tuple(like[k] for k in names))
            out.update(zip(names, unravel(flat), strict=True))
        return out

    def values(self, layout: Any) -> list[Array]:
        return [layout[k] for k in self.names] if self.keyed else [layout]


def euclidean_metric(
    inverse_mass_matrix: Any,
    mass_matrix_sqrt: Any,
    mass_matrix_sqrt_inv: Any,
    prototype: Any,
    kinetic_fn: Callable[[Any, Any], Array] | None = None,
) -> Metric:
    """The BlackJAX ``Metric`` of a Gaussian momentum ``N(0, M)`` in NumPyro's layout.

    Args:
        inverse_mass_matrix: ``M^{-1}``: an array (1-D diagonal or 2-D dense, over the
            flattened position) or a dict of such blocks keyed by tuples of site names.
        mass_matrix_sqrt: ``M^{1/2}`` in the same layout (momentum ``r = M^{1/2} eps``).
        mass_matrix_sqrt_inv: ``M^{-1/2}`` in the same layout.
        prototype: a position (its structure: BlackJAX passes some momenta flattened).
        kinetic_fn: NumPyro's ``kinetic_fn(inverse_mass_matrix, r)``; default Gaussian.

    Example:
        >>> x = {"x": jnp.array([1.0])}
        >>> m = euclidean_metric(jnp.array([4.0]), jnp.array([0.5]), jnp.array([2.0]), x)
        >>> float(m.kinetic_energy(x))
        2.0
    """
    blocks = _Blocks(inverse_mass_matrix, prototype)
    imms = blocks.values(inverse_mass_matrix)
    sqrts = blocks.values(mass_matrix_sqrt)
    sqrt_invs = blocks.values(mass_matrix_sqrt_inv)

    def sample_momentum(rng_key: Array, position: Any) -> Any:
        # NumPyro's momentum_generator: one key per block of a dict layout, else the key.
        keys = random.split(rng_key, len(sqrts)) if blocks.keyed else [rng_key]
        flats = blocks.split(position)
        draws = [
            _mv(sqrt, random.normal(k, flat.shape, flat.dtype))
            for sqrt, k, flat in zip(sqrts, keys, flats, strict=True)
        ]
        return blocks.join(position, draws)

    if kinetic_fn is None:

        def kinetic_energy(momentum: Any, position: Any = None) -> Array:
            total: Any = 0.0
            for imm, r in zip(imms, blocks.split(momentum), strict=True):
                total = total + 0.5 * jnp.dot(_mv(imm, r), r)
            return jnp.asarray(total)

        def velocities(momentum: Any) -> list[Array]:
            return [_mv(imm, r) for imm, r in zip(imms, blocks.split(momentum), strict=True)]

    else:
        custom = kinetic_fn

        def kinetic_energy(momentum: Any, position: Any = None) -> Array:
            if blocks.keyed and not isinstance(momentum, dict):
                assert blocks.unravel is not None
                momentum = blocks.unravel(momentum)
            return custom(inverse_mass_matrix, momentum)

        def velocities(momentum: Any) -> list[Array]:
            return blocks.split(jax.grad(kinetic_energy)(momentum))

    def check_turning(
        momentum_left: Any,
        momentum_right: Any,
        momentum_sum: Any,
        position_left: Any = None,
        position_right: Any = None,
    ) -> Array:
        left, right = velocities(momentum_left), velocities(momentum_right)
        m_left, m_right = blocks.split(momentum_left), blocks.split(momentum_right)
        m_sum = blocks.split(momentum_sum)
        at_left: Any = 0.0
        at_right: Any = 0.0
        for v_l, v_r, r_l, r_r, r_s in zip(left, right, m_left, m_right, m_sum, strict=True):
            rho = r_s - (r_r + r_l) / 2
            at_left = at_left + jnp.dot(v_l, rho)
            at_right = at_right + jnp.dot(v_r, rho)
        return (jnp.asarray(at_left) <= 0) | (jnp.asarray(at_right) <= 0)

    def scale(position: Any, element: Any, *, inv: bool, trans: bool) -> Any:
        matrices = sqrt_invs if inv else sqrts
        apply = _mtv if trans else _mv
        flats = [apply(m, e) for m, e in zip(matrices, blocks.split(element), strict=True)]
        return blocks.join(element, flats)

    return Metric(sample_momentum, kinetic_energy, check_turning, scale)


def forward_mode_logdensity(logdensity: Callable[[Any], Array]) -> Callable[[Any], Array]:
    """``logdensity`` whose reverse-mode gradient is computed in forward mode (``jacfwd``).

    BlackJAX's integrators call ``jax.value_and_grad``; wrapping the log density in a
    ``custom_vjp`` whose forward pass takes the gradient with ``jax.jacfwd`` gives
    NumPyro's ``forward_mode_differentiation=True`` (models with ``lax.while_loop``).

    Example:
        >>> f = forward_mode_logdensity(lambda x: -(x**2).sum())
        >>> jax.grad(f)(jnp.array([1.0, 2.0]))
        Array([-2., -4.], dtype=float32)
    """

    @jax.custom_vjp
    def fn(z: Any) -> Array:
        return logdensity(z)

    def fwd(z: Any) -> tuple[Array, Any]:
        def with_aux(x: Any) -> tuple[Array, Array]:
            out = logdensity(x)
            return out, out

        grad, value = jax.jacfwd(with_aux, has_aux=True)(z)
        return value, grad

    def bwd(grad: Any, cotangent: Array) -> tuple[Any]:
        return (jax.tree_util.tree_map(lambda g: cotangent * g, grad),)

    fn.defvjp(fwd, bwd)
    return fn  # type: ignore[no-any-return]
