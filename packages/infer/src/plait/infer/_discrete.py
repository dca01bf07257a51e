"""Metropolis-within-Gibbs updates of discrete latent values (NumPyro's proposals).

The discrete values ``z`` are a dict of integer arrays; ``potential_fn(z)`` is minus the
log joint with everything else held fixed. An update picks one flat coordinate ``idx``
of ``z`` (support size ``K``) and proposes a new value for it:

- *Gibbs*: from the full conditional ``p(z_idx | rest)``, by one pass over the ``K - 1``
  other values with an online categorical draw (``K`` is traced: it differs between
  coordinates). Always accepted.
- *modified Gibbs* (Liu 1996): from the conditional restricted to the other values,
  accepted with ``(1 - p(current)) / (1 - p(new))``.
- *random walk*: uniformly over the support; *modified random walk*: uniformly over the
  other values. Accepted with the Metropolis ratio.

Each proposal returns ``(rng_key, z_new, pe_new, log_accept_ratio)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import jax.numpy as jnp
from jax import Array, lax, random
from jax.flatten_util import ravel_pytree
from jax.scipy.special import expit

__all__ = ["ProposalFn", "discrete_gibbs_sweep", "select_discrete_proposal"]

Values: TypeAlias = dict[str, Array]
PotentialFn: TypeAlias = Callable[[Values], Array]
ProposalFn: TypeAlias = Callable[
    [Array, Values, Array, PotentialFn, Array, Array], tuple[Array, Values, Array, Array]
]


def _scan_others(
    rng_key: Array,
    z: Values,
    pe: Array,
    potential_fn: PotentialFn,
    idx: Array,
    support_size: Array,
    log_weight_sum: Array,
) -> tuple[Array, Values, Array, Array]:
    """Visit the ``K - 1`` values of coordinate ``idx`` other than the current one,
    keeping each with probability ``w / (W + w)`` (``w = exp(pe - pe_new)``, ``W`` the
    running sum, which starts at ``exp(log_weight_sum)``)."""
    flat, unravel = ravel_pytree(z)

    def body(i: Array, val: tuple[Array, Values, Array, Array]) -> Any:
        key, z_kept, pe_kept, total = val
        key, key_keep = random.split(key)
        proposal = jnp.where(i >= flat[idx], i + 1, i).astype(flat.dtype)
        z_new = unravel(flat.at[idx].set(proposal))
        pe_new = potential_fn(z_new)
        log_weight = pe - pe_new
        log_weight = jnp.where(jnp.isfinite(log_weight), log_weight, -jnp.inf)
        keep = random.bernoulli(key_keep, expit(log_weight - total))
        z_kept = {k: jnp.where(keep, z_new[k], v) for k, v in z_kept.items()}
        pe_kept = jnp.where(keep, pe_new, pe_kept)
        return key, z_kept, pe_kept, jnp.logaddexp(log_weight, total)

    init = (rng_key, z, pe, log_weight_sum)
    return lax.fori_loop(0, support_size - 1, body, init)  # type: ignore[no-any-return]


def gibbs_proposal(
    rng_key: Array,
    z: Values,
    pe: Array,
    potential_fn: PotentialFn,
    idx: Array,
    support_size: Array,
) -> tuple[Array, Values, Array, Array]:
    """A draw of coordinate ``idx`` from its full conditional (always accepted)."""
    rng_key, z_new, pe_new, _ = _scan_others(
        rng_key, z, pe, potential_fn, idx, support_size, jnp.zeros_like(pe)
    )
    return rng_key, z_new, pe_new, jnp.zeros_like(pe)


def modified_gibbs_proposal(
    rng_key: Array,
    z: Values,
    pe: Array,
    potential_fn: PotentialFn,
    idx: Array,
    support_size: Array,
) -> tuple[Array, Values, Array, Array]:
    """A draw from the conditional without the current value, with Liu's correction
    ``log W - log(W - expm1(pe - pe_new))`` (``W``: the others' total relative weight)."""
    rng_key, z_new, pe_new, log_weight_sum = _scan_others(
        rng_key, z, pe, potential_fn, idx, support_size, jnp.full_like(pe, -jnp.inf)
    )
    log_accept_ratio = log_weight_sum - jnp.log(jnp.exp(log_weight_sum) - jnp.expm1(pe - pe_new))
    return rng_key, z_new, pe_new, log_accept_ratio


def _set(z: Values, idx: Array, value: Array) -> Values:
    flat, unravel = ravel_pytree(z)
    return unravel(flat.at[idx].set(value.astype(flat.dtype)))  # type: ignore[no-any-return]


def rw_proposal(
    rng_key: Array,
    z: Values,
    pe: Array,
    potential_fn: PotentialFn,
    idx: Array,
    support_size: Array,
) -> tuple[Array, Values, Array, Array]:
    """A uniform draw over the support of coordinate ``idx``."""
    rng_key, key_proposal = random.split(rng_key)
    z_new = _set(z, idx, random.randint(key_proposal, (), 0, support_size))
    pe_new = potential_fn(z_new)
    return rng_key, z_new, pe_new, pe - pe_new


def modified_rw_proposal(
    rng_key: Array,
    z: Values,
    pe: Array,
    potential_fn: PotentialFn,
    idx: Array,
    support_size: Array,
) -> tuple[Array, Values, Array, Array]:
    """A uniform draw over the values of coordinate ``idx`` other than the current one."""
    rng_key, key_proposal = random.split(rng_key)
    current = ravel_pytree(z)[0][idx]
    i = random.randint(key_proposal, (), 0, support_size - 1)
    z_new = _set(z, idx, jnp.where(i >= current, i + 1, i))
    pe_new = potential_fn(z_new)
    return rng_key, z_new, pe_new, pe - pe_new


def select_discrete_proposal(random_walk: bool, modified: bool) -> ProposalFn:
    """The proposal for ``random_walk`` / ``modified`` (NumPyro's four choices).

    Example:
        >>> select_discrete_proposal(random_walk=False, modified=True).__name__
        'modified_gibbs_proposal'
    """
    if random_walk:
        return modified_rw_proposal if modified else rw_proposal
    return modified_gibbs_proposal if modified else gibbs_proposal


def discrete_gibbs_sweep(
    rng_key: Array,
    z: Values,
    pe: Array,
    potential_fn: PotentialFn,
    support_sizes: Array,
    proposal_fn: ProposalFn,
) -> tuple[Values, Array]:
    """One sweep over every flat coordinate of ``z`` in a random order, each updated by
    ``proposal_fn`` and its Metropolis test.

    Args:
        rng_key: the key.
        z: the discrete values.
        pe: the potential energy at ``z``.
        potential_fn: the potential energy of discrete values.
        support_sizes: the support size of each flat coordinate (``ravel_pytree`` order).
        proposal_fn: a proposal of :func:`select_discrete_proposal`.

    Returns:
        The new values and their potential energy.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> logits = jnp.log(jnp.array([0.2, 0.3, 0.5]))
        >>> pe_fn = lambda z: -logits[z["c"]].sum()
        >>> z = {"c": jnp.array([0, 0])}
        >>> proposal = select_discrete_proposal(False, False)
        >>> new, pe = discrete_gibbs_sweep(
        ...     jax.random.key(0), z, pe_fn(z), pe_fn, jnp.array([3, 3]), proposal
        ... )
        >>> bool(jnp.allclose(pe, pe_fn(new)))
        True
    """
    rng_key, key_order = random.split(rng_key)
    order = random.permutation(key_order, support_sizes.shape[0])

    def body(i: Array, val: tuple[Array, Values, Array]) -> tuple[Array, Values, Array]:
        key, z, pe = val
        idx = order[i]
        key, z_new, pe_new, log_accept_ratio = proposal_fn(
            key, z, pe, potential_fn, idx, support_sizes[idx]
        )
        key, key_accept = random.split(key)
        # u < ratio  <=>  -log u > -log ratio, and -log u ~ Exponential(1).
        accept = random.exponential(key_accept, dtype=pe.dtype) > -log_accept_ratio
        z = {k: jnp.where(accept, z_new[k], v) for k, v in z.items()}
        return key, z, jnp.where(accept, pe_new, pe)

    _, z, pe = lax.fori_loop(0, support_sizes.shape[0], body, (rng_key, z, pe))
    return z, pe
