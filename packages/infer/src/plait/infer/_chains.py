"""How chains are laid out: vectorised with ``vmap``, or split over devices on a mesh."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "CHAINS",
    "CHAIN_AXIS",
    "chain_mesh",
    "gathered",
    "over_chains",
    "place_chains",
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
            f"There are not enough devices to run parallel chains: expected {num_chains} but "
            f"got {len(devices)}. Chains will be drawn sequentially. If you are running MCMC "
            "on CPU, consider jax.config.update('jax_num_cpu_devices', "
            f"{num_chains}) at the beginning of your program.",
            UserWarning,
            stacklevel=3,
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


def gathered(tree: Any) -> Any:
    """``tree`` with each array that spans other processes' devices gathered into this
    process (``multihost_utils.process_allgather``); other leaves as they are.

    With ``jax.distributed`` every process runs this at the same point (a collective);
    in one process it changes nothing.
    """

    def fetch(leaf: Any) -> Any:
        if not isinstance(leaf, jax.Array) or leaf.is_fully_addressable:
            return leaf
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):  # typed keys: gather their bits
            bits = multihost_utils.process_allgather(jax.random.key_data(leaf), tiled=True)
            return jax.random.wrap_key_data(jnp.asarray(bits), impl=jax.random.key_impl(leaf))
        return jnp.asarray(multihost_utils.process_allgather(leaf, tiled=True))

    return jax.tree_util.tree_map(fetch, tree)


def take_chain(tree: Any, chain: int, keep_axis: bool = True) -> Any:
    """Chain ``chain`` of a chain-batched tree, keeping a chain axis of size one (or
    dropping it)."""
    if keep_axis:
        return jax.tree_util.tree_map(lambda a: a[chain : chain + 1], tree)
    return jax.tree_util.tree_map(lambda a: a[chain], tree)


def place_chains(tree: Any, mesh: Mesh | None) -> Any:
    """Put a chain-batched tree on ``mesh``, chains split over its devices (as is when
    ``mesh`` is ``None``)."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, CHAINS)
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)

    # Over several processes (jax.distributed) each holds the whole tree (see gathered):
    # every process builds the global array from the rows of its own devices.
    def place(leaf: Any) -> Any:
        if jnp.issubdtype(jnp.result_type(leaf), jax.dtypes.prng_key):
            bits = place(jax.random.key_data(leaf))
            return jax.random.wrap_key_data(bits, impl=jax.random.key_impl(leaf))
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree_util.tree_map(place, tree)
