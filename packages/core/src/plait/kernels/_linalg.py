"""Square-root linear algebra for the Gaussian kernels: ``tria`` and friends.

Every covariance is carried as a square root ``L`` (``Σ = L Lᵀ``, ``L`` lower
triangular with a non-negative diagonal), and every update is a ``tria``: the
triangular square root of ``M Mᵀ`` computed from ``M`` by a QR decomposition,
without forming ``M Mᵀ`` (Kailath, Sayed & Hassibi 2000, ch. 12). Its derivative
is defined here (`tria`'s custom JVP, the Cholesky derivative of ``M Mᵀ``), which
needs two triangular solves and no ``Q`` factor: JAX's own QR derivative builds
the full ``Q`` (LAPACK ``orgqr``), which was measured 8x slower under load on
CPU, where OpenBLAS threads it.
"""

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from plait.kernels._semiring import HIGHEST

__all__: list[str] = []


def mm(a: Array, b: Array) -> Array:
    """Batched matrix product at full float32 precision (no TF32 on accelerators)."""
    return jnp.matmul(a, b, precision=HIGHEST)


def mv(a: Array, v: Array) -> Array:
    """Batched matrix-vector product ``a @ v`` at full precision."""
    return jnp.matmul(a, v[..., None], precision=HIGHEST)[..., 0]


def mt(a: Array) -> Array:
    """The transpose of the last two axes."""
    return jnp.swapaxes(a, -1, -2)


def _broadcast_batch(a: Array, b: Array) -> tuple[Array, Array]:
    batch = jnp.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return jnp.broadcast_to(a, batch + a.shape[-2:]), jnp.broadcast_to(b, batch + b.shape[-2:])


def solve_lower(lower: Array, b: Array) -> Array:
    """``lower⁻¹ b`` for a lower-triangular ``lower`` and a matrix ``b`` (batch dims broadcast)."""
    if lower.shape[-1] == 1:
        return b / lower
    lower, b = _broadcast_batch(lower, b)
    return lax.linalg.triangular_solve(lower, b, left_side=True, lower=True)


def solve_lower_vec(lower: Array, v: Array) -> Array:
    """``lower⁻¹ v`` for a vector ``v``."""
    return solve_lower(lower, v[..., None])[..., 0]


def solve_upper_t(lower: Array, b: Array) -> Array:
    """``lower⁻ᵀ b``: the solve with the transpose of a lower-triangular matrix."""
    if lower.shape[-1] == 1:
        return b / lower
    lower, b = _broadcast_batch(lower, b)
    return lax.linalg.triangular_solve(lower, b, left_side=True, lower=True, transpose_a=True)


def log_abs_det_tril(lower: Array) -> Array:
    """``log |det lower|`` of a triangular matrix: the sum of ``log |diagonal|``."""
    return jnp.sum(jnp.log(jnp.abs(jnp.diagonal(lower, axis1=-2, axis2=-1))), axis=-1)


def symmetrize(a: Array) -> Array:
    return 0.5 * (a + mt(a))


def cholesky(a: Array) -> Array:
    """Lower Cholesky factor of a symmetric positive-definite matrix (symmetrised first)."""
    if a.shape[-1] == 1:
        return jnp.sqrt(a)
    # jnp.linalg.cholesky symmetrises its input itself, as symmetrize would.
    factor: Array = jnp.linalg.cholesky(a)
    return factor


@jax.custom_jvp
def tria(m: Float[Array, "*batch state cols"]) -> Float[Array, "*batch state state"]:
    """The lower-triangular ``L`` with ``L Lᵀ = M Mᵀ`` and ``diag(L) >= 0``, by QR of ``Mᵀ``.

    ``M`` has at least as many columns as rows. For one row it is the norm.
    """
    n, cols = m.shape[-2:]
    if cols < n:
        raise ValueError(f"tria needs at least as many columns as rows; got {m.shape}.")
    if n == 1:
        return jnp.sqrt(jnp.sum(m * m, axis=-1, keepdims=True))
    r: Array = jnp.linalg.qr(mt(m), mode="r")
    lower = mt(r[..., :n, :])
    diag = jnp.diagonal(lower, axis1=-2, axis2=-1)
    return lower * jnp.where(diag < 0, -1.0, 1.0).astype(m.dtype)[..., None, :]


@tria.defjvp
def _tria_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    # L Lᵀ = M Mᵀ, so dL = L Φ(L⁻¹ dΣ L⁻ᵀ) with dΣ = dM Mᵀ + M dMᵀ and Φ the lower
    # triangle with a halved diagonal (the Cholesky derivative, Murray 2016).
    # L⁻¹ dM Mᵀ L⁻ᵀ = L⁻¹ (dM (L⁻¹ M)ᵀ): two triangular solves, no Q factor; the
    # tangent's has n columns, not M's (so has its transpose in the backward pass).
    (m,), (dm,) = primals, tangents
    lower = tria(m)
    half = solve_lower(lower, mm(dm, mt(solve_lower(lower, m))))
    x = half + mt(half)
    phi = jnp.tril(x) - 0.5 * jnp.eye(x.shape[-1], dtype=x.dtype) * x
    return lower, mm(lower, phi)
