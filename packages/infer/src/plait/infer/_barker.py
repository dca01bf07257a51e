"""``BarkerMH``: the Barker proposal (Livingstone & Zanella 2022) on BlackJAX's kernel.

One step of the Barker proposal from ``x``, with step size ``σ`` and inverse mass matrix
``Σ = U Uᵀ`` (diagonal, or dense with ``U`` upper triangular, NumPyro's square root):

    z ~ N(0, σ² I),   c = Uᵀ ∇log π(x),   b_i = +1 with probability sigmoid(c_i z_i) else -1,
    y = x + U (b ⊙ z),

accepted with probability ``min(1, π(y)/π(x) · Π_i (1 + exp(-c_i w_i)) / (1 + exp(c'_i w_i)))``
where ``w = b ⊙ z = U⁻¹ (y - x)`` and ``c' = Uᵀ ∇log π(y)`` (reference [1], Appendix G).
BlackJAX implements exactly this, with one catch: its ``inverse_mass_matrix`` argument is
used as the *mass* matrix (the proposal covariance is its inverse), so the kernel here
hands BlackJAX ``Σ⁻¹``; BlackJAX's factor of it, ``chol(Σ⁻¹)⁻ᵀ``, is then exactly ``U``.

[1] S. Livingstone, G. Zanella, *The Barker proposal: combining robustness and efficiency
in gradient-based MCMC*, JRSS B (2022).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
from blackjax.mcmc import barker as bj_barker
from blackjax.mcmc.metrics import Metric, gaussian_euclidean
from jax import Array

__all__ = ["BarkerMHState", "barker_kernel", "barker_metric"]


class BarkerMHState(NamedTuple):
    """The state of a :class:`BarkerMH` chain (NumPyro's fields).

    Fields:
        i: the iteration (counted from zero again after warm-up).
        z: the unconstrained latent values.
        potential_energy: minus the log density at ``z``.
        z_grad: the gradient of the potential energy at ``z``.
        accept_prob: the acceptance probability of the last proposal.
        mean_accept_prob: the running mean of ``accept_prob`` (over warm-up, then over
            the draws).
        adapt_state: the warm-up state (step size and inverse mass matrix).
        rng_key: the key of the next step.
    """

    i: Array
    z: Any
    potential_energy: Array
    z_grad: Any
    accept_prob: Array
    mean_accept_prob: Array
    adapt_state: Any
    rng_key: Array


def barker_metric(inverse_mass_matrix: Array) -> Metric:
    """The BlackJAX metric under which its Barker kernel proposes with covariance
    ``step_size² · inverse_mass_matrix`` (diagonal: a vector; dense: a matrix).

    BlackJAX 1.7's Barker kernel scales the noise by the square root of the matrix
    it is given read as a *mass* matrix, so it gets the inverse here.

    Example:
        >>> import jax.numpy as jnp
        >>> metric = barker_metric(jnp.array([4.0, 0.25]))
        >>> metric.scale(None, jnp.ones(2), inv=False, trans=False)
        Array([2. , 0.5], dtype=float32)
    """
    if jnp.ndim(inverse_mass_matrix) == 1:
        return gaussian_euclidean(1.0 / inverse_mass_matrix)
    mass = jnp.linalg.inv(inverse_mass_matrix)
    return gaussian_euclidean(0.5 * (mass + mass.T))


def barker_kernel(
    rng_key: Array,
    state: bj_barker.BarkerState,
    logdensity_fn: Callable[[Any], Array],
    step_size: Array | float,
    inverse_mass_matrix: Array,
) -> tuple[bj_barker.BarkerState, bj_barker.BarkerInfo]:
    """One Barker step (BlackJAX's kernel) with proposal covariance
    ``step_size² · inverse_mass_matrix``.

    Args:
        rng_key: the key of this step.
        state: ``blackjax.mcmc.barker.BarkerState(position, logdensity, logdensity_grad)``.
        logdensity_fn: the log density of a position (a pytree).
        step_size: the global scale ``σ``.
        inverse_mass_matrix: the preconditioner ``Σ`` (a vector for a diagonal one).

    Returns:
        The new state and BlackJAX's ``BarkerInfo(acceptance_rate, is_accepted, proposal)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from blackjax.mcmc.barker import init
        >>> logdensity = lambda x: -0.5 * jnp.sum(x**2)
        >>> state = init(jnp.zeros(3), logdensity)
        >>> new, info = barker_kernel(jax.random.key(0), state, logdensity, 0.5, jnp.ones(3))
        >>> new.position.shape, bool(0.0 <= info.acceptance_rate <= 1.0)
        ((3,), True)
    """
    kernel = bj_barker.build_kernel()
    return kernel(  # type: ignore[no-any-return]
        rng_key, state, logdensity_fn, step_size, barker_metric(inverse_mass_matrix)
    )
