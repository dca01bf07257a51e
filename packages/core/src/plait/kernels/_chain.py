"""Contraction of a chain of step log-matrices: the public entry points.

A chain is an initial log-vector ``init[x_0]`` and ``T`` step log-matrices
``steps[t, x_t, x_{t+1}]`` over the states ``x_0, ..., x_T`` (``S`` values each).
Its sum-product total is

    log Z = log Σ_{x_0..x_T} exp(init[x_0] + Σ_{t<T} steps[t, x_t, x_{t+1}])

and its max-product total replaces the sum by a max (the best path's score).
See ``README.md`` in this folder for the strategies and how ``"auto"`` chooses.
"""

from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from plait.kernels._strategies import REDUCE, associative, normalize, sequential, tree
from plait.kernels._types import (
    Chain,
    ChainResult,
    FilterResult,
    Semiring,
    Steps,
    Strategy,
    prepare,
)

__all__ = ["auto_strategy", "chain_filter", "chain_logsumexp", "chain_max"]

# On an accelerator one sequential step costs a few kernel launches (~10 µs)
# whatever its size, so the O(log T)-depth forms win from short chains on. Not
# measured (no accelerator was available): a conservative guess.
_PARALLEL_MIN_STEPS = 64


def auto_strategy(
    num_steps: int,
    num_states: int,
    *,
    prefix: bool = False,
    backend: str | None = None,
) -> Literal["sequential", "tree", "associative"]:
    """The strategy that ``strategy="auto"`` picks.

    On CPU the work-efficient sequential recursion (``O(T S^2)`` work) wins at
    every size measured (``benchmarks/kernels.py``): the parallel forms do ``S``
    times more work (``O(T S^3)``) and a CPU has few cores to spend it on. On an
    accelerator a sequential step costs a few kernel launches whatever its size,
    so from ``T >= 64`` the ``O(log T)``-depth forms are chosen: the tree for a
    total, the associative scan when prefix messages are needed.

    Args:
        num_steps: ``T``, the number of step matrices.
        num_states: ``S`` (not used by the current rule; part of the signature so
            that a size-dependent rule needs no API change).
        prefix: whether every filtering message is needed (filtering, sampling,
            Viterbi) rather than the total only.
        backend: ``"cpu"``, ``"gpu"``, ``"tpu"``...; ``jax.default_backend()`` if None.

    Returns:
        ``"sequential"``, ``"tree"`` or ``"associative"``.

    Example:
        >>> from plait.kernels import auto_strategy
        >>> auto_strategy(100_000, 16, backend="cpu")
        'sequential'
        >>> auto_strategy(100_000, 16, backend="gpu", prefix=True)
        'associative'
    """
    del num_states
    if backend is None:
        backend = jax.default_backend()
    if backend == "cpu" or num_steps < _PARALLEL_MIN_STEPS:
        return "sequential"
    return "associative" if prefix else "tree"


def chain_logsumexp(
    init: Float[ArrayLike, "*#batch state"],
    steps: Steps,
    *,
    strategy: Strategy = "auto",
) -> ChainResult:
    """Sum-product contraction of a chain: its log normalizer ``log Z``.

    ``log Z = log Σ_{x_0..x_T} exp(init[x_0] + Σ_{t<T} steps[t, x_t, x_{t+1}])``,
    i.e. ``log(exp(init) @ exp(steps[0]) @ ... @ exp(steps[T-1]) @ 1)``: the
    forward algorithm (Rabiner 1989) in the log semiring. Accurate in float32 at
    any length (relative error ~1e-7 in the value, ~1e-5 in the gradient at
    ``T = 1e5``): every strategy keeps its running quantity normalised and sums
    the log normalisers outside any loop. Differentiable; ``-inf`` entries are
    allowed (forbidden transitions) and give no NaN where ``log Z`` is finite.

    Strategies (static): ``"sequential"`` (``lax.scan``, ``O(T S^2)`` work, depth
    ``T``), ``"tree"`` (pairwise reduction, ``O(T S^3)`` work, depth ``log T``),
    ``"associative"`` (``lax.associative_scan``, about twice the tree's work; it
    computes every prefix, wasted here), ``"auto"`` (`auto_strategy`).

    Args:
        init: ``init[..., x_0]``, log-weights of the first state.
        steps: ``steps[..., t, x_t, x_{t+1}]``, log-weights of the ``T`` steps,
            or `FactoredSteps` (faster for a shared transition). Batch
            dimensions in front, broadcast against ``init``'s.
        strategy: how to contract (static).

    Returns:
        ``ChainResult(log_normalizer, log_final)``.

    Raises:
        ValueError: for inconsistent shapes or an unknown strategy.
        TypeError: for non-floating or mixed dtypes.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from plait.kernels import chain_logsumexp
        >>> init = jnp.log(jnp.array([0.5, 0.5]))
        >>> steps = jnp.log(jnp.full((3, 2, 2), 0.5))  # 3 fair coin flips
        >>> chain_logsumexp(init, steps).log_normalizer
        Array(0., dtype=float32)
        >>> jax.grad(lambda s: chain_logsumexp(init, s).log_normalizer)(steps).sum()
        Array(3., dtype=float32)
    """
    chain = prepare(init, steps)
    return _contract(chain, "log", _resolve(strategy, chain, prefix=False))


def chain_max(
    init: Float[ArrayLike, "*#batch state"],
    steps: Steps,
    *,
    strategy: Strategy = "auto",
) -> ChainResult:
    """Max-product contraction of a chain: the best path's score.

    ``max_{x_0..x_T} init[x_0] + Σ_{t<T} steps[t, x_t, x_{t+1}]``, the Viterbi
    score (the log semiring's sum replaced by a max; exact, no exponentials).
    Its gradient is the indicator of the best path (where it is unique). Same
    arguments and strategies as `chain_logsumexp`; `chain_mode` gives the path.

    Args:
        init: ``init[..., x_0]``, log-weights of the first state.
        steps: ``steps[..., t, x_t, x_{t+1}]``, log-weights of the ``T`` steps,
            or `FactoredSteps`.
        strategy: how to contract (static).

    Returns:
        ``ChainResult(log_normalizer, log_final)`` in the max-plus semiring.

    Raises:
        ValueError: for inconsistent shapes or an unknown strategy.
        TypeError: for non-floating or mixed dtypes.

    Example:
        >>> import jax.numpy as jnp
        >>> from plait.kernels import chain_max
        >>> init = jnp.array([0.0, -2.0])
        >>> steps = jnp.array([[[-2.0, -1.0], [-3.0, 0.0]]] * 4)
        >>> chain_max(init, steps).log_normalizer  # path 0, 1, 1, 1, 1
        Array(-1., dtype=float32)
    """
    chain = prepare(init, steps)
    return _contract(chain, "max", _resolve(strategy, chain, prefix=False))


def chain_filter(
    init: Float[ArrayLike, "*#batch state"],
    steps: Steps,
    *,
    semiring: Semiring = "log",
    strategy: Strategy = "auto",
) -> FilterResult:
    """Forward filtering: every prefix message of a chain, normalised.

    Sum-product: ``log_filtered[..., t, :] = log p(x_{t+1} | init, steps[:t+1])``,
    the forward recursion ``a_{t+1}(j) = Σ_i a_t(i) exp(steps[t, i, j])``
    normalised at every step. Max-product: the same with max (Viterbi's forward
    messages). The backward passes (`chain_sample`, `chain_mode`) run on these.

    Args:
        init: ``init[..., x_0]``, log-weights of the first state.
        steps: ``steps[..., t, x_t, x_{t+1}]``, log-weights of the ``T`` steps,
            or `FactoredSteps`.
        semiring: ``"log"`` (sum-product) or ``"max"`` (max-product), static.
        strategy: ``"sequential"``, ``"associative"`` or ``"auto"`` (static);
            ``"tree"`` computes a total only and is refused.

    Returns:
        ``FilterResult(log_normalizer, log_filtered)``.

    Raises:
        ValueError: for inconsistent shapes, ``strategy="tree"``, or an unknown
            strategy or semiring.
        TypeError: for non-floating or mixed dtypes.

    Example:
        >>> import jax.numpy as jnp
        >>> from plait.kernels import chain_filter
        >>> init = jnp.log(jnp.array([1.0, 0.0]))  # start in state 0
        >>> steps = jnp.log(jnp.array([[[0.5, 0.5], [0.0, 1.0]]] * 2))
        >>> jnp.exp(chain_filter(init, steps).log_filtered)
        Array([[0.5 , 0.5 ],
               [0.25, 0.75]], dtype=float32)
    """
    chain = prepare(init, steps)
    return _filter(chain, _check_semiring(semiring), _resolve(strategy, chain, prefix=True))


def chain_messages(
    init: ArrayLike, steps: Steps, semiring: Semiring, strategy: Strategy
) -> tuple[Chain, Array, Array, Array, str]:
    """Validated inputs and the forward messages that a backward pass needs.

    Returns ``(chain, log_normalizer, previous, last, strategy)``: ``previous``
    ``(*batch, T, S)`` holds the normalised messages of ``x_0, ..., x_{T-1}``,
    ``last`` ``(*batch, S)`` that of ``x_T``, and ``strategy`` is resolved.
    """
    chain = prepare(init, steps)
    resolved = _resolve(strategy, chain, prefix=True)
    result = _filter(chain, semiring, resolved)
    first = normalize(chain.init, semiring)
    messages = jnp.concatenate([first[..., None, :], result.log_filtered], axis=-2)
    return chain, result.log_normalizer, messages[..., :-1, :], messages[..., -1, :], resolved


def _contract(chain: Chain, semiring: Semiring, strategy: str) -> ChainResult:
    if chain.num_steps == 0:
        return ChainResult(REDUCE[semiring](chain.init, -1), normalize(chain.init, semiring))
    if strategy == "sequential":
        total, final, _ = sequential(chain, semiring, keep=False)
        return ChainResult(total, final)
    if strategy == "tree":
        return tree(chain, semiring)
    result = associative(chain, semiring)
    return ChainResult(result.log_normalizer, result.log_filtered[..., -1, :])


def _filter(chain: Chain, semiring: Semiring, strategy: str) -> FilterResult:
    if chain.num_steps == 0:
        empty = jnp.zeros((*chain.init.shape[:-1], 0, chain.num_states), chain.init.dtype)
        return FilterResult(REDUCE[semiring](chain.init, -1), empty)
    if strategy == "sequential":
        total, _, messages = sequential(chain, semiring, keep=True)
        assert messages is not None
        return FilterResult(total, messages)
    return associative(chain, semiring)


def _check_semiring(semiring: str) -> Semiring:
    if semiring == "log":
        return "log"
    if semiring == "max":
        return "max"
    raise ValueError(f'semiring must be "log" or "max"; got {semiring!r}.')


def _resolve(strategy: str, chain: Chain, *, prefix: bool) -> str:
    if strategy == "auto":
        return auto_strategy(chain.num_steps, chain.num_states, prefix=prefix)
    if strategy not in ("sequential", "tree", "associative"):
        raise ValueError(
            f'strategy must be "auto", "sequential", "tree" or "associative"; got {strategy!r}.'
        )
    if prefix and strategy == "tree":
        raise ValueError(
            'strategy="tree" computes the total only; filtering, sampling and Viterbi '
            'need every prefix message: use strategy="associative" (O(log T) depth) '
            'or "sequential".'
        )
    return strategy
