"""The inputs and results of the Kalman kernels, and their validation and batching.

A linear-Gaussian chain (a state-space model) over ``x_0, ..., x_T``::

    x_0     ~ N(init_mean, init_scale_tril init_scale_trilᵀ)
    x_{t+1} ~ N(F_t x_t + c_t, S_t S_tᵀ)          (transition, t = 0..T-1)
    y_t     ~ N(H_t x_{t+1} + d_t, U_t U_tᵀ)      (emission of x_{t+1}, where mask[t])

``observations[t]`` is emitted by the state ``x_{t+1}`` that step ``t`` produces, as
``steps[t, x_t, x_{t+1}]`` of the discrete chains, and as a ``scan`` body that draws
``x`` and then observes ``y``.
"""

import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

__all__ = [
    "AffineGaussian",
    "GaussianPath",
    "KalmanFilterResult",
    "KalmanSmootherResult",
    "KalmanStrategy",
]

KalmanStrategy = Literal["auto", "sequential", "associative"]
"""How a linear-Gaussian chain is filtered: a static (Python) option of every Kalman kernel."""


class AffineGaussian(NamedTuple):
    """A Gaussian whose mean is affine in a previous state: ``z ~ N(matrix x + offset, L Lᵀ)``.

    Used for the transition (``z = x_{t+1}``, ``out = state``) and the emission
    (``z = y_t``, ``out = obs``) of a linear-Gaussian chain. Every field has a time
    axis of size ``T`` (one value per step) or 1 (shared by every step), after
    optional leading batch dimensions that broadcast against the others.

    Attributes:
        matrix: ``F_t`` or ``H_t``, shape ``(*batch, T or 1, out, state)``.
        offset: ``c_t`` or ``d_t``, shape ``(*batch, T or 1, out)``.
        scale_tril: a square root ``L_t`` of the noise covariance ``L_t L_tᵀ``, shape
            ``(*batch, T or 1, out, out)``: a lower Cholesky factor (NumPyro's
            ``scale_tril``) or any other square root, such as a diagonal of scales.
            It may be singular (a deterministic component).
    """

    matrix: Float[ArrayLike, "*#batch #time out state"]
    offset: Float[ArrayLike, "*#batch #time out"]
    scale_tril: Float[ArrayLike, "*#batch #time out out"]


class KalmanFilterResult(NamedTuple):
    """The marginal likelihood and the filtering distributions of a linear-Gaussian chain.

    Attributes:
        log_normalizer: ``log p(y_{0:T-1})``, the marginal log-likelihood of the
            observations whose mask is true (``Σ_t log N(y_t | H_t m_t⁻ + d_t, S_t)``
            with ``m_t⁻``, ``S_t`` the one-step predicted mean and innovation
            covariance).
        filtered_means: ``filtered_means[..., t, :] = E[x_{t+1} | y_{0:t}]``.
        filtered_covariances: ``Cov[x_{t+1} | y_{0:t}]``, symmetric.
    """

    log_normalizer: Float[Array, "*batch"]
    filtered_means: Float[Array, "*batch time state"]
    filtered_covariances: Float[Array, "*batch time state state"]


class KalmanSmootherResult(NamedTuple):
    """The posterior marginals of every state of a linear-Gaussian chain given all observations.

    Attributes:
        log_normalizer: ``log p(y_{0:T-1})``, as `KalmanFilterResult.log_normalizer`.
        initial_mean: ``E[x_0 | y_{0:T-1}]``.
        initial_covariance: ``Cov[x_0 | y_{0:T-1}]``.
        smoothed_means: ``smoothed_means[..., t, :] = E[x_{t+1} | y_{0:T-1}]``.
        smoothed_covariances: ``Cov[x_{t+1} | y_{0:T-1}]``, symmetric.
    """

    log_normalizer: Float[Array, "*batch"]
    initial_mean: Float[Array, "*batch state"]
    initial_covariance: Float[Array, "*batch state state"]
    smoothed_means: Float[Array, "*batch time state"]
    smoothed_covariances: Float[Array, "*batch time state state"]


class GaussianPath(NamedTuple):
    """One draw of the latent path ``x_0, ..., x_T`` of a linear-Gaussian chain.

    Attributes:
        initial_state: ``x_0``.
        states: ``x_1, ..., x_T`` (``states[..., t, :]`` is the state after step ``t``).
        log_normalizer: ``log p(y_{0:T-1})`` of the chain the path was drawn under.
    """

    initial_state: Float[Array, "*batch state"]
    states: Float[Array, "*batch time state"]
    log_normalizer: Float[Array, "*batch"]


class Chain(NamedTuple):
    """One chain's validated inputs (no batch dims). Step fields have time size T or 1."""

    init_mean: Array  # (n,)
    init_scale: Array  # (n, n)
    f: Array  # (T|1, n, n)
    c: Array  # (T|1, n)
    s: Array  # (T|1, n, n)
    h: Array  # (T|1, k, n)
    d: Array  # (T|1, k)
    u: Array  # (T|1, k, k)
    y: Array  # (T, k), zero where masked
    mask: Array | None  # (T,) float 0/1, or None when every step is observed

    @property
    def num_steps(self) -> int:
        return self.y.shape[-2]


_CORE_NDIMS = (1, 2, 3, 2, 3, 3, 2, 3, 2, 1)
_FIELDS = (
    "init_mean",
    "init_scale_tril",
    "transition.matrix",
    "transition.offset",
    "transition.scale_tril",
    "emission.matrix",
    "emission.offset",
    "emission.scale_tril",
    "observations",
    "mask",
)


def prepare(
    init_mean: ArrayLike,
    init_scale_tril: ArrayLike,
    transition: AffineGaussian,
    emission: AffineGaussian,
    observations: ArrayLike,
    mask: ArrayLike | None,  # checked here, so a float mask gets an explanation
) -> tuple[Chain, tuple[int, ...], tuple[bool, ...]]:
    """Checks shapes and dtypes; returns the inputs with one flat batch axis.

    Returns ``(chain, batch_shape, batched)``: each field of ``chain`` has a leading
    axis of size ``prod(batch_shape)`` where ``batched[i]`` is true, and none where
    the field has no batch dims (it is shared by every chain).
    """
    if not isinstance(transition, AffineGaussian) or not isinstance(emission, AffineGaussian):
        raise TypeError(
            "transition and emission must be plait.kernels.AffineGaussian(matrix, offset, "
            f"scale_tril); got {type(transition).__name__} and {type(emission).__name__}."
        )
    arrays = [
        jnp.asarray(init_mean),
        jnp.asarray(init_scale_tril),
        *map(jnp.asarray, transition),
        *map(jnp.asarray, emission),
        jnp.asarray(observations),
    ]
    floats = {a.dtype for a in arrays}
    if len(floats) != 1 or not jnp.issubdtype(arrays[0].dtype, jnp.floating):
        raise TypeError(
            "every input of a Kalman kernel must share one floating dtype; got "
            f"{', '.join(sorted(map(str, floats)))}. Cast with .astype()."
        )
    dtype = arrays[0].dtype
    mask_array = None if mask is None else jnp.asarray(mask)
    if mask_array is not None and mask_array.dtype != jnp.bool_:
        raise TypeError(f"mask must be a boolean array; got dtype {mask_array.dtype}.")
    for name, a, core_ndim in zip(_FIELDS, arrays, _CORE_NDIMS, strict=False):
        if a.ndim < core_ndim:
            raise ValueError(_shape_message(name, a.shape, arrays, mask_array))
    n = arrays[0].shape[-1]
    k = arrays[8].shape[-1]
    num_steps = arrays[8].shape[-2]
    expected: list[tuple[int | None, ...]] = [
        (n,),
        (n, n),
        (None, n, n),
        (None, n),
        (None, n, n),
        (None, k, n),
        (None, k),
        (None, k, k),
        (num_steps, k),
    ]
    for name, a, want in zip(_FIELDS, arrays, expected, strict=False):
        got = a.shape[a.ndim - len(want) :]
        ok = all(w is None or w == g for w, g in zip(want, got, strict=True))
        if not ok or (want[0] is None and got[0] not in (1, num_steps)):
            raise ValueError(_shape_message(name, a.shape, arrays, mask_array))
    if mask_array is not None and (mask_array.ndim < 1 or mask_array.shape[-1] != num_steps):
        raise ValueError(_shape_message("mask", mask_array.shape, arrays, mask_array))
    if mask_array is not None:
        arrays.append(mask_array)
    cores = [a.shape[a.ndim - c :] for a, c in zip(arrays, _CORE_NDIMS, strict=False)]
    batches = [a.shape[: a.ndim - c] for a, c in zip(arrays, _CORE_NDIMS, strict=False)]
    try:
        batch_shape = jnp.broadcast_shapes(*batches)
    except ValueError:
        listed = ", ".join(f"{f} {b}" for f, b in zip(_FIELDS, batches, strict=False))
        raise ValueError(
            "the batch dimensions (those left of each input's own axes) of the Kalman "
            f"inputs do not broadcast: {listed}."
        ) from None
    size = math.prod(batch_shape)
    flat: list[Array | None] = []
    batched: list[bool] = []
    for a, batch, core_shape in zip(arrays, batches, cores, strict=True):
        if all(d == 1 for d in batch):
            flat.append(a.reshape(core_shape))
            batched.append(False)
        else:
            flat.append(jnp.broadcast_to(a, batch_shape + core_shape).reshape((size, *core_shape)))
            batched.append(True)
    if mask_array is None:
        flat.append(None)
        batched.append(False)
    else:
        m = flat[9]
        y = flat[8]
        assert m is not None and y is not None
        flat[9] = m.astype(dtype)
        # Masked observations may hold anything (NaN for missing data): zero them so
        # that no NaN reaches a value or a gradient through the discarded update.
        flat[8] = jnp.where(m[..., None] > 0, y, jnp.zeros((), dtype))
        batched[8] = batched[8] or batched[9]
    return Chain(*flat), batch_shape, tuple(batched)  # type: ignore[arg-type]


def _shape_message(
    name: str, shape: tuple[int, ...], arrays: list[Array], mask: Array | None
) -> str:
    shapes = ", ".join(f"{f} {a.shape}" for f, a in zip(_FIELDS, arrays, strict=False))
    if mask is not None:
        shapes += f", mask {mask.shape}"
    return (
        f"{name} has shape {shape}, which does not fit a linear-Gaussian chain. Expected "
        "(with n states, k observed dims, T steps, optional batch dims in front): "
        "init_mean (n,), init_scale_tril (n, n), transition.matrix (T or 1, n, n), "
        "transition.offset (T or 1, n), transition.scale_tril (T or 1, n, n), "
        "emission.matrix (T or 1, k, n), emission.offset (T or 1, k), "
        "emission.scale_tril (T or 1, k, k), observations (T, k), mask (T,). "
        f"Got {shapes}."
    )


def in_axes_of(batched: tuple[bool, ...]) -> Any:
    """``jax.vmap``'s ``in_axes`` for a prepared `Chain`: 0 for batched fields, else None."""
    return Chain(*(0 if b else None for b in batched))  # type: ignore[arg-type]


def run_batched(
    fn: Callable[[Chain], object],
    chain: Chain,
    batched: tuple[bool, ...],
    batch_shape: tuple[int, ...],
) -> object:
    """``fn`` on one chain, vmapped over the flat batch axis, reshaped to ``batch_shape``."""
    if not any(batched):
        return fn(chain)
    in_axes = in_axes_of(batched)
    out = jax.vmap(fn, in_axes=(in_axes,))(chain)
    return jax.tree.map(lambda a: a.reshape(batch_shape + a.shape[1:]), out)
