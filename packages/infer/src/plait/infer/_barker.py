"""``BarkerMH``: the Barker proposal (Livingstone & Zanella 2022) on BlackJAX's kernel.

One step of the Barker proposal from ``x``, with step size ``sigma`` and inverse mass matrix
``Σ = U Uᵀ`` (diagonal, or dense with ``U`` upper triangular, NumPyro's square root):

    z ~ N(0, sigma² I),   c = Uᵀ ∇log π(x),   b_i = +1 with probability sigmoid(c_i z_i) else -1,
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

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.mcmc import barker as bj_barker
from blackjax.mcmc.metrics import Metric, gaussian_euclidean
from jax import Array, lax, random
from jax.flatten_util import ravel_pytree

from plait.infer._adaptation import HMCAdaptState, warmup_adapter
from plait.infer._init import InitStrategy, init_to_uniform
from plait.infer._on_model import ModelKernel

__all__ = ["BarkerMH", "BarkerMHState", "barker_kernel", "barker_metric"]


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
        step_size: the global scale ``sigma``.
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


class BarkerMH(ModelKernel[BarkerMHState]):
    """Metropolis-Hastings with the Barker proposal: gradient-based, skewed towards
    higher density, robust to the step size (NumPyro's ``BarkerMH``; BlackJAX's kernel).

    The step size adapts by dual averaging towards ``target_accept_prob`` and the mass
    matrix by Stan's windows, as NumPyro's warm-up does for HMC. Suited to low and
    moderate dimensions, where it competes with HMC and NUTS.

    Args:
        model: the model (or give ``potential_fn``).
        potential_fn: minus the log density of unconstrained parameters (then
            ``MCMC.run`` needs ``init_params``).
        step_size: the initial step size.
        adapt_step_size: adapt the step size during warm-up.
        adapt_mass_matrix: adapt the mass matrix during warm-up.
        dense_mass: a dense mass matrix (diagonal otherwise).
        target_accept_prob: the acceptance rate the step size adaptation aims at.
        init_strategy: where chains start (:func:`plait.infer.init_to_uniform`, ...).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import MCMC, BarkerMH
        >>> def model():
        ...     x = sample("x", dist.Normal().expand([10]).to_event(1))
        ...     sample("obs", dist.Normal(x, 1.0).to_event(1), obs=jnp.ones(10))
        >>> mcmc = MCMC(BarkerMH(model), num_warmup=500, num_samples=1000, progress_bar=False)
        >>> mcmc.run(jax.random.key(0))
        >>> bool(jnp.all(jnp.abs(mcmc.get_samples()["x"].mean(0) - 0.5) < 0.25))
        True
    """

    def __init__(
        self,
        model: Callable[..., Any] | None = None,
        potential_fn: Callable[[Any], Array] | None = None,
        step_size: float = 1.0,
        adapt_step_size: bool = True,
        adapt_mass_matrix: bool = True,
        dense_mass: bool = False,
        target_accept_prob: float = 0.4,
        init_strategy: InitStrategy = init_to_uniform,
    ) -> None:
        super().__init__(model, potential_fn, init_strategy)
        self._step_size = float(step_size)
        self._adapt_step_size = adapt_step_size
        self._adapt_mass_matrix = adapt_mass_matrix
        self._dense_mass = bool(dense_mass)
        self._target_accept_prob = target_accept_prob
        self._num_warmup = 0

    def _adapter(self, num_warmup: int) -> tuple[Callable[..., HMCAdaptState], Callable[..., Any]]:
        return warmup_adapter(
            num_warmup,
            adapt_step_size=self._adapt_step_size,
            adapt_mass_matrix=self._adapt_mass_matrix,
            dense_mass=self._dense_mass,
            target_accept_prob=self._target_accept_prob,
        )

    def init(
        self,
        rng_key: Array,
        num_warmup: int,
        init_params: Any,
        model_args: tuple[Any, ...],
        model_kwargs: dict[str, Any],
    ) -> BarkerMHState:
        self._num_warmup = num_warmup
        rng_key, key_init, key_wa = random.split(rng_key, 3)
        z, pe, grad = self.initial_params(
            key_init, init_params, model_args, model_kwargs, validate_grad=True
        )
        wa_init, _ = self._adapter(num_warmup)
        adapt = wa_init((z, None, pe, grad), key_wa, self._step_size, None)
        real = jnp.zeros((), jnp.result_type(float))
        return BarkerMHState(
            jnp.array(0, jnp.int32), z, jnp.asarray(pe), grad, real, real, adapt, rng_key
        )

    def check_init(
        self, state: BarkerMHState, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> BarkerMHState:
        valid = np.isfinite(np.asarray(state.potential_energy)).reshape(-1)
        for grad in jax.tree_util.tree_leaves(state.z_grad):
            valid &= np.isfinite(np.asarray(grad).reshape(valid.shape[0], -1)).all(-1)
        return self.restart_invalid(state, valid, model_args, model_kwargs, validate_grad=True)

    def sample(
        self, state: BarkerMHState, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> BarkerMHState:
        potential = self.get_potential_fn(model_args, model_kwargs)
        rng_key, key_step = random.split(state.rng_key)
        adapt = state.adapt_state
        # BlackJAX works leaf by leaf: one flat vector is one leaf (one key split, one
        # noise draw) however many sites the model has.
        flat, unravel = ravel_pytree(state.z)
        start = bj_barker.BarkerState(flat, -state.potential_energy, -ravel_pytree(state.z_grad)[0])
        new, info = barker_kernel(
            key_step,
            start,
            lambda v: -potential(unravel(v)),
            adapt.step_size,
            adapt.inverse_mass_matrix,
        )
        # BlackJAX's log1p(exp(.)) can overflow to inf - inf: that proposal is rejected.
        accept_prob = jnp.nan_to_num(jnp.asarray(info.acceptance_rate), nan=0.0)
        accept_prob = accept_prob.astype(state.accept_prob.dtype)
        z, pe = unravel(new.position), (-new.logdensity).astype(state.potential_energy.dtype)
        grad = unravel(-new.logdensity_grad)
        warming = state.i < self._num_warmup
        _, update = self._adapter(self._num_warmup)
        adapt = lax.cond(
            warming,
            lambda a: update(state.i, accept_prob, (z, None, pe, grad), a),
            lambda a: a,
            adapt,
        )
        itr = state.i + 1
        n = jnp.where(warming, itr, itr - self._num_warmup).astype(accept_prob.dtype)
        mean = state.mean_accept_prob + (accept_prob - state.mean_accept_prob) / n
        return BarkerMHState(itr, z, pe, grad, accept_prob, mean, adapt, rng_key)

    def get_diagnostics_str(self, state: BarkerMHState) -> str:
        return (
            f"step size {float(state.adapt_state.step_size):.2e}. "
            f"acc. prob={float(state.mean_accept_prob):.2f}"
        )
