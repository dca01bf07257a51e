"""The sites of one branch of a ``cond``, cut into a static skeleton and their arrays.

A scalar-predicate ``cond`` runs its branches under ``lax.switch``, which needs every branch
to return the same structure: each branch's sites are cut into a :class:`BranchSite`
(static: type, name, flags, tree structures, non-numeric leaves) and a flat list of arrays
(every numeric leaf of ``fn``, ``value``, ``scale``, ``infer``, ``args``). Two branches can
share one ``lax.switch`` exactly when their skeletons and the shapes and dtypes of their
arrays agree (:func:`same_layout`); after the switch, :func:`join_site` rebuilds the sites.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from plait import InferDict, Message, PlateFrame, Stash, Trace
from plait.control_flow._sites import _join, _Split

__all__ = ["BranchSite", "join_site", "same_layout", "split_branch"]

_SITE_TYPES = frozenset({"sample", "deterministic", "param", "mutable"})


def _numeric(leaf: Any) -> bool:
    if isinstance(leaf, bool):
        return False
    return isinstance(leaf, jax.Array | np.ndarray | np.generic | int | float | complex)


def _strong(leaf: Any) -> Any:
    """An array of fixed dtype (weak Python-number types made strong), so that branches
    returning ``20.0`` and an array share one output type."""
    array = jnp.asarray(leaf)
    return lax.convert_element_type(array, array.dtype)


def _split_numeric(tree: Any) -> tuple[_Split, list[Any]]:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    dynamic = tuple(_numeric(leaf) for leaf in leaves)
    static = tuple(None if d else leaf for leaf, d in zip(leaves, dynamic, strict=True))
    arrays = [_strong(leaf) for leaf, d in zip(leaves, dynamic, strict=True) if d]
    return _Split(treedef, static, dynamic), arrays


class BranchSite(NamedTuple):
    """The static part of one site of a branch.

    Fields:
        type, name, is_observed: as in :class:`plait.Message`.
        fn, value, scale, infer, args: tree structure and non-numeric leaves of those
            fields; ``sizes`` says how many arrays of the flat list each takes.
        kwargs: the site's ``kwargs`` with its key dropped (it is per branch).
        cond_indep_stack: the site's plates.
        stash: the site's plugin data (copied, static).
    """

    type: str
    name: str
    is_observed: bool
    fn: _Split
    value: _Split
    scale: _Split
    infer: _Split
    args: _Split
    sizes: tuple[int, int, int, int, int]
    kwargs: dict[str, Any]
    cond_indep_stack: tuple[PlateFrame, ...]
    stash: Stash


def split_branch(trace: Trace) -> tuple[dict[str, BranchSite], dict[str, list[Any]]]:
    """Cut a branch's trace into skeletons and flat lists of arrays (plates dropped).

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import Message
        >>> site = Message(type="sample", name="x", fn=dist.Normal(20.0, 1.0), value=1.0)
        >>> skeletons, arrays = split_branch({"x": site})
        >>> skeletons["x"].sizes, [a.shape for a in arrays["x"]]
        ((2, 1, 0, 0, 0), [(), (), ()])
    """
    skeletons: dict[str, BranchSite] = {}
    arrays: dict[str, list[Any]] = {}
    for name, msg in trace.items():
        if msg.type not in _SITE_TYPES:
            continue
        kwargs = dict(msg.kwargs)
        if "rng_key" in kwargs:
            kwargs["rng_key"] = None
        if msg.type == "sample":
            fn_split, fn_arrays = _split_numeric(msg.fn)
        else:  # a param's init function, or nothing
            fn_split, fn_arrays = _Split(None, (msg.fn,), (False,)), []
        parts = [
            _split_numeric(msg.value),
            _split_numeric(msg.scale),
            _split_numeric(dict(msg.infer)),
            _split_numeric(msg.args),
        ]
        flat = fn_arrays + [a for _, part in parts for a in part]
        sizes = (len(fn_arrays), *(len(part) for _, part in parts))
        skeletons[name] = BranchSite(
            type=msg.type,
            name=name,
            is_observed=msg.is_observed,
            fn=fn_split,
            value=parts[0][0],
            scale=parts[1][0],
            infer=parts[2][0],
            args=parts[3][0],
            sizes=sizes,  # type: ignore[arg-type]
            kwargs=kwargs,
            cond_indep_stack=tuple(msg.cond_indep_stack),
            stash=Stash(msg.stash),
        )
        arrays[name] = flat
    return skeletons, arrays


def _join_fn(split: _Split, arrays: list[Any]) -> Any:
    if split.treedef is None:
        return split.static[0]
    return _join(split, arrays)


def join_site(site: BranchSite, arrays: list[Any]) -> Message:
    """The message of ``site`` with its arrays put back.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import Message
        >>> site = Message(type="sample", name="x", fn=dist.Normal(20.0, 1.0), value=1.0)
        >>> skeletons, arrays = split_branch({"x": site})
        >>> float(join_site(skeletons["x"], arrays["x"]).fn.loc)
        20.0
    """
    parts: list[list[Any]] = []
    start = 0
    for size in site.sizes:
        parts.append(list(arrays[start : start + size]))
        start += size
    infer: InferDict = _join(site.infer, parts[3])
    return Message(
        type=site.type,
        name=site.name,
        fn=_join_fn(site.fn, parts[0]),
        args=tuple(_join(site.args, parts[4])),
        kwargs=dict(site.kwargs),
        value=_join(site.value, parts[1]),
        scale=_join(site.scale, parts[2]),
        is_observed=site.is_observed,
        cond_indep_stack=list(site.cond_indep_stack),
        infer=infer,
        stash=Stash(site.stash),
    )


def _same_static(a: _Split, b: _Split) -> bool:
    if not bool(a.treedef == b.treedef) or a.dynamic != b.dynamic:
        return False
    for x, y in zip(a.static, b.static, strict=True):
        if x is y:
            continue
        try:
            if type(x) is not type(y) or not bool(x == y):
                return False
        except Exception:  # an object with an odd __eq__: not the same
            return False
    return True


def _same_kwargs(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    for key, x in a.items():
        y = b[key]
        if x is y:
            continue
        try:
            if type(x) is not type(y) or not bool(x == y):
                return False
        except Exception:  # arrays, or an odd __eq__: not the same
            return False
    return True


def _skeleton_key(site: BranchSite) -> tuple[Any, ...]:
    return (site.type, site.name, site.is_observed, site.sizes, site.cond_indep_stack)


def same_layout(
    a: tuple[Mapping[str, BranchSite], list[Any]],
    b: tuple[Mapping[str, BranchSite], list[Any]],
) -> bool:
    """Whether two branches' sites (skeletons, and the avals of their arrays in order) are
    the same up to array values, so that one ``lax.switch`` can return either."""
    sites_a, avals_a = a
    sites_b, avals_b = b
    if list(sites_a) != list(sites_b):
        return False
    for name, site in sites_a.items():
        other = sites_b[name]
        if _skeleton_key(site) != _skeleton_key(other):
            return False
        if not _same_kwargs(site.kwargs, other.kwargs):
            return False
        for part in ("fn", "value", "scale", "infer", "args"):
            if not _same_static(getattr(site, part), getattr(other, part)):
                return False
    if len(avals_a) != len(avals_b):
        return False
    return all(
        tuple(x.shape) == tuple(y.shape) and x.dtype == y.dtype
        for x, y in zip(avals_a, avals_b, strict=True)
    )
