"""How chains are laid out: vectorised with ``vmap``, or split over devices on a mesh."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.experimental import multihost_utils
from jax.sharding import Mesh, PartitionSpec

from plait.errors import SiteError

__all__ = [
    "CHAINS",
    "CHAIN_AXIS",
    "chain_mesh",
    "first_draws",
    "gathered",
    "over_chains",
    "per_chain",
    "take_chain",
    "vmap_chains",
]

CHAIN_AXIS = "chain"
CHAINS = PartitionSpec(CHAIN_AXIS)  # type: ignore[no-untyped-call,unused-ignore]
_REPLICATED = PartitionSpec()  # type: ignore[no-untyped-call,unused-ignore]


def chain_mesh(num_chains: int) -> Mesh | None:
    """A one-axis mesh over as many devices as divide ``num_chains`` (``None``, with a
    warning, when that is one device)."""
    devices = jax.devices()
    n = max(d for d in range(1, len(devices) + 1) if num_chains % d == 0)
    if n == 1:
        warnings.warn(
            f"chain_method='parallel' found {len(devices)} device(s) for {num_chains} "
            "chains; running the chains vectorised on one device.",
            UserWarning,
            stacklevel=4,
        )
        return None
    return Mesh(np.array(devices[:n]), (CHAIN_AXIS,))


def over_chains(
    fn: Callable[..., Any], in_axes: tuple[int | None, ...], mesh: Mesh | None
) -> Callable[..., Any]:
    """``fn`` of one chain mapped over a leading chain axis (``in_axes`` 0) of its
    arguments: vectorised, and split over ``mesh``'s devices with ``shard_map``."""
    mapped = vmap_chains(fn, in_axes)
    if mesh is None:
        return mapped
    specs = tuple(CHAINS if a == 0 else _REPLICATED for a in in_axes)
    return jax.shard_map(  # type: ignore[no-any-return,unused-ignore]
        mapped,
        mesh=mesh,
        in_specs=specs,
        out_specs=CHAINS,
        # BlackJAX's NUTS mixes replicated and per-chain values in its lax.cond.
        check_vma=False,
    )


def per_chain(
    init_params: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]], num_chains: int
) -> dict[str, Array]:
    """Unconstrained starting values with a leading chain dim (broadcast if shared)."""
    missing = sorted(set(shapes) - set(init_params))
    if missing:
        raise SiteError(
            missing[0],
            f"init_params has no value for the latent site(s) {missing}; give unconstrained "
            "values for every continuous latent, or use NUTS(model, init_strategy="
            "init_to_value(values=...)) to start some of them.",
        )
    out: dict[str, Array] = {}
    for name, shape in shapes.items():
        value = jnp.asarray(init_params[name])
        if value.shape == shape:
            value = jnp.broadcast_to(value, (num_chains, *shape))
        elif value.shape != (num_chains, *shape):
            raise SiteError(
                name,
                f"init_params['{name}'] has shape {value.shape}; expected the site's "
                f"unconstrained shape {shape}, or {(num_chains, *shape)} with one value per chain.",
            )
        out[name] = value
    return out


def vmap_chains(fn: Callable[..., Any], in_axes: tuple[int | None, ...]) -> Callable[..., Any]:
    """``jax.vmap(fn, in_axes)``, but a batch of one chain runs ``fn`` itself: a vmapped
    NUTS step (batched while loops) compiles about twice as slowly."""
    batched = jax.vmap(fn, in_axes=in_axes)

    def mapped(*args: Any) -> Any:
        leaves = [
            leaf
            for arg, axis in zip(args, in_axes, strict=True)
            if axis == 0
            for leaf in jax.tree_util.tree_leaves(arg)
        ]
        if leaves and leaves[0].shape[0] == 1:
            squeezed = [
                jax.tree_util.tree_map(lambda a: a[0], arg) if axis == 0 else arg
                for arg, axis in zip(args, in_axes, strict=True)
            ]
            return jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], fn(*squeezed))
        return batched(*args)

    return mapped


def first_draws(chunk: Array, done: int) -> np.ndarray:
    """The first ``done`` draws of a chunk shaped ``(chain, step, ...)``, in NumPy."""
    return np.asarray(gathered(chunk))[:, :done]


def gathered(tree: Any) -> Any:
    """``tree`` with each array that spans other processes' devices gathered into this
    process (``multihost_utils.process_allgather``); other leaves as they are.

    With ``jax.distributed`` every process runs this at the same point (a collective);
    in one process it changes nothing.
    """

    def fetch(leaf: Any) -> Any:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return jnp.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return leaf

    return jax.tree_util.tree_map(fetch, tree)


def take_chain(tree: Any, chain: int) -> Any:
    """Chain ``chain`` of a chain-batched tree, keeping a chain axis of size one."""
    return jax.tree_util.tree_map(lambda a: a[chain : chain + 1], tree)
