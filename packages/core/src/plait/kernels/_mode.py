"""Viterbi: the best path through a chain, sequential or O(log T) depth."""

from jaxtyping import ArrayLike, Float

from plait.kernels._chain import chain_messages
from plait.kernels._sample import backtrack
from plait.kernels._types import ChainPath, Steps, Strategy

__all__ = ["chain_mode"]


def chain_mode(
    init: Float[ArrayLike, "*#batch state"],
    steps: Steps,
    *,
    strategy: Strategy = "auto",
) -> ChainPath:
    """The most probable path ``argmax_{x_0..x_T} init[x_0] + Σ_t steps[t, x_t, x_{t+1}]``.

    Viterbi (1967): max-product forward messages ``d_t`` (`chain_filter` with
    ``semiring="max"``), then ``x_T = argmax d_T`` and
    ``x_t = argmax_i(d_t(i) + steps[t, i, x_{t+1}])``; the temperature-0
    counterpart of `chain_sample`. Ties go to the lowest state index.

    Args:
        init: ``init[..., x_0]``, log-weights of the first state.
        steps: ``steps[..., t, x_t, x_{t+1}]``, log-weights of the ``T`` steps,
            or `FactoredSteps`.
        strategy: static. ``"sequential"``: sequential forward pass and backward
            scan; ``"associative"``: both with O(log T) depth (the backward pass
            composes argmax lookup tables); ``"auto"``: `auto_strategy` with
            ``prefix=True``. ``"tree"`` is refused.

    Returns:
        ``ChainPath(initial_state, states, log_normalizer)``: int32 states and
        the best score.

    Raises:
        ValueError: for inconsistent shapes, ``strategy="tree"`` or an unknown
            strategy.
        TypeError: for non-floating or mixed dtypes.

    Example:
        >>> import jax.numpy as jnp
        >>> from plait.kernels import chain_mode
        >>> init = jnp.array([0.0, -2.0])
        >>> steps = jnp.array([[[-2.0, -1.0], [-3.0, 0.0]]] * 4)
        >>> path = chain_mode(init, steps)
        >>> path.initial_state, path.states, path.log_normalizer
        (Array(0, dtype=int32), Array([1, 1, 1, 1], dtype=int32), Array(-1., dtype=float32))
    """
    chain, total, previous, last, resolved = chain_messages(init, steps, "max", strategy)
    initial, states = backtrack(previous, last, chain.transition, resolved)
    return ChainPath(initial, states, total)
