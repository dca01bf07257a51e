"""``NUTS``: the No-U-Turn sampler (NumPyro's ``NUTS``, a subclass of :class:`HMC`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jax import Array

from plait.infer._hmc_kernel import HMC, DenseMass
from plait.infer._init import InitStrategy, init_to_uniform

__all__ = ["NUTS"]


class NUTS(HMC):
    """The No-U-Turn sampler (BlackJAX's multinomial NUTS) with Stan's window adaptation
    as NumPyro runs it.

    Discrete latents are summed out of the potential by the log-density hook
    (plait-enum); unmarked ones are marked for enumeration with NumPyro's
    ``FutureWarning``.

    Args:
        model: the model (or give ``potential_fn``).
        potential_fn: minus the log density of unconstrained parameters (then
            ``MCMC.run`` needs ``init_params``).
        kinetic_fn: ``kinetic_fn(inverse_mass_matrix, r)``; default Gaussian.
        step_size: the initial step size.
        inverse_mass_matrix: the initial inverse mass matrix (an array, or a dict of
            blocks keyed by tuples of site names).
        adapt_step_size: adapt the step size by dual averaging during warm-up.
        adapt_mass_matrix: adapt the mass matrix during warm-up.
        dense_mass: ``True`` (dense), ``False`` (diagonal), or a list of tuples of site
            names, each a dense block.
        target_accept_prob: the acceptance rate the step size adaptation aims at.
        trajectory_length: unused by NUTS (NumPyro's argument).
        max_tree_depth: the largest number of trajectory doublings, or ``(d1, d2)``:
            ``d1`` during warm-up, ``d2`` after.
        init_strategy: where chains start (:func:`plait.infer.init_to_uniform`, ...).
        find_heuristic_step_size: search a reasonable step size at the start of each
            adaptation window.
        forward_mode_differentiation: take gradients in forward mode.
        regularize_mass_matrix: Stan's shrinkage of the estimated mass matrix.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import NUTS
        >>> NUTS(lambda: sample("x", dist.Normal(0.0, 1.0)), target_accept_prob=0.9)
        NUTS(<lambda>, target_accept_prob=0.9)
    """

    _algo = "NUTS"

    def __init__(
        self,
        model: Callable[..., Any] | None = None,
        potential_fn: Callable[[Any], Array] | None = None,
        kinetic_fn: Callable[[Any, Any], Array] | None = None,
        step_size: float = 1.0,
        inverse_mass_matrix: Any = None,
        adapt_step_size: bool = True,
        adapt_mass_matrix: bool = True,
        dense_mass: DenseMass = False,
        target_accept_prob: float = 0.8,
        trajectory_length: float | None = None,
        max_tree_depth: int | tuple[int, int] = 10,
        init_strategy: InitStrategy = init_to_uniform,
        find_heuristic_step_size: bool = False,
        forward_mode_differentiation: bool = False,
        regularize_mass_matrix: bool = True,
    ) -> None:
        super().__init__(
            model=model,
            potential_fn=potential_fn,
            kinetic_fn=kinetic_fn,
            step_size=step_size,
            inverse_mass_matrix=inverse_mass_matrix,
            adapt_step_size=adapt_step_size,
            adapt_mass_matrix=adapt_mass_matrix,
            dense_mass=dense_mass,
            target_accept_prob=target_accept_prob,
            trajectory_length=trajectory_length,
            init_strategy=init_strategy,
            find_heuristic_step_size=find_heuristic_step_size,
            forward_mode_differentiation=forward_mode_differentiation,
            regularize_mass_matrix=regularize_mass_matrix,
        )
        self._max_tree_depth = max_tree_depth
