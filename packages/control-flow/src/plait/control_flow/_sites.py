"""The sites of a ``scan`` body, split into what is stacked over time and what is not.

One step's trace becomes, per site, a :class:`SiteSkeleton` (static: type, name, flags,
the tree structure of ``fn``/``value``) and a :class:`SitePayload` (arrays, which the loop
stacks along a new leading time dim). After the loop, :func:`stacked_sites` puts them
back together into messages whose ``fn`` has batch shape ``(length, *batch)`` and whose
``value`` lines up with it (NumPyro's ``promote_batch_shape`` and value reshaping), marked
with :data:`STACKED`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from plait import InferDict, Message, PlateFrame, Stash, StashKey, Trace
from plait.errors import SiteError

__all__ = [
    "ACCUMULATED",
    "PRIMITIVE",
    "STACKED",
    "LoopSite",
    "SitePayload",
    "SiteSkeleton",
    "split_trace",
    "stacked_sites",
]

STACKED: StashKey[int] = StashKey()
"""On the sites a loop sends after it ran, stacked over a leading time dim: the number of
steps stacked. The one mark of a loop's sites; handlers never need it (the handlers that act
inside a loop do not see these sites, see :meth:`plait.Messenger.for_control_flow`)."""

PRIMITIVE: StashKey[str] = StashKey()
"""On a ``control_flow`` message: the primitive that sent it (``"scan"``, ``"cond"`` for
``cond`` and ``switch``, ``"while_loop"`` for ``while_loop`` and ``fori_loop`` with traced
bounds), for handlers that treat them differently."""


class LoopSite(NamedTuple):
    """Where a site that a loop of unknown length sent comes from.

    Fields:
        loop: the body function's name.
        distribution: the class name of the body site's distribution.
    """

    loop: str
    distribution: str


ACCUMULATED: StashKey[LoopSite] = StashKey()
"""On the sites a ``while_loop`` (or a ``fori_loop`` with traced bounds) sends after it ran:
an observed site whose distribution is a :class:`plait.Unit` carrying the body site's log
density summed over the iterations; the mark says which loop and distribution."""

_STACKED_TYPES = frozenset({"sample", "deterministic", "param", "mutable"})


class _Split(NamedTuple):
    """A pytree cut in two: its leaves at ``dynamic`` positions are stacked."""

    treedef: Any
    static: tuple[Any, ...]
    dynamic: tuple[bool, ...]


def _split(tree: Any) -> tuple[_Split, list[Any]]:
    """Cut ``tree`` into its JAX-array leaves (stacked over time) and the rest: Python
    numbers and NumPy constants are the same every step and stay unstacked (distributions
    rank-align their parameters, so they broadcast against the stacked ones)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    dynamic = tuple(isinstance(leaf, jax.Array) for leaf in leaves)
    static = tuple(None if d else leaf for leaf, d in zip(leaves, dynamic, strict=True))
    return _Split(treedef, static, dynamic), [
        leaf for leaf, d in zip(leaves, dynamic, strict=True) if d
    ]


def _join(split: _Split, arrays: list[Any], time_axis: bool = False) -> Any:
    """Put a split pytree back together; with ``time_axis`` its numeric constants get a
    leading size-1 dim, so every parameter of a distribution has the time dim."""
    it = iter(arrays)
    leaves = [
        next(it) if d else (_with_time_axis(s) if time_axis else s)
        for s, d in zip(split.static, split.dynamic, strict=True)
    ]
    return jax.tree_util.tree_unflatten(split.treedef, leaves)


def _with_time_axis(leaf: Any) -> Any:
    if isinstance(leaf, bool) or not isinstance(
        leaf, int | float | complex | np.ndarray | np.generic
    ):
        return leaf
    return np.asarray(leaf, dtype=jnp.result_type(leaf))[None]


class SiteSkeleton(NamedTuple):
    """The static part of one body site (the same at every step).

    Fields:
        type, name, is_observed: as in :class:`plait.Message`.
        fn, args, kwargs, scale, infer: the static parts of those fields (tree structure
            and non-array leaves); their arrays are in the :class:`SitePayload`.
        value, intermediates: tree structures (every leaf is stacked).
        cond_indep_stack: the site's plates (those enclosing the loop included: they act
            inside the body).

    Example:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import Message
        >>> site = Message(type="sample", name="x", fn=dist.Normal(jnp.zeros(2), 1.0),
        ...                value=jnp.ones(2))
        >>> skeletons, payloads = split_trace({"x": site})
        >>> skeletons["x"].type, len(payloads["x"].fn)  # loc is stacked, scale=1.0 is not
        ('sample', 1)
    """

    type: str
    name: str
    is_observed: bool
    fn: _Split
    args: _Split
    kwargs: _Split
    scale: _Split
    infer: _Split
    value: Any
    intermediates: Any
    cond_indep_stack: tuple[PlateFrame, ...]


class SitePayload(NamedTuple):
    """The arrays of one body site, stacked over time by the loop (see
    :class:`SiteSkeleton` for an example).

    Fields:
        fn, args, kwargs, scale, infer: the JAX-array leaves of those fields.
        value, intermediates: every leaf of those fields.
    """

    fn: list[Any]
    args: list[Any]
    kwargs: list[Any]
    scale: list[Any]
    infer: list[Any]
    value: list[Any]
    intermediates: list[Any]


def split_trace(trace: Trace) -> tuple[dict[str, SiteSkeleton], dict[str, SitePayload]]:
    """Split one step's trace into skeletons and payloads (plates are dropped).

    Example:
        >>> import jax.numpy as jnp
        >>> from plait import Message
        >>> step = {"d": Message(type="deterministic", name="d", value=jnp.zeros(2))}
        >>> skeletons, payloads = split_trace(step)
        >>> skeletons["d"].type, [v.shape for v in payloads["d"].value]
        ('deterministic', [(2,)])
    """
    skeletons: dict[str, SiteSkeleton] = {}
    payloads: dict[str, SitePayload] = {}
    for name, msg in trace.items():
        if msg.type not in _STACKED_TYPES:
            continue
        fn, kwargs = msg.fn, dict(msg.kwargs)
        if msg.type == "sample":
            kwargs["rng_key"] = None
            sample_shape = tuple(kwargs.get("sample_shape", ()))
            if sample_shape:  # fold into the batch, so the time dim lines up
                fn = fn.expand(sample_shape + tuple(fn.batch_shape))
                kwargs["sample_shape"] = ()
        if msg.type == "sample":
            fn_split, fn_arrays = _split(fn)
        else:  # the init function of a param: not stacked
            fn_split, fn_arrays = _Split(None, (fn,), ()), []
        args_split, args_arrays = _split(msg.args)
        kwargs_split, kwargs_arrays = _split(kwargs)
        scale_split, scale_arrays = _split(msg.scale)
        infer_split, infer_arrays = _split(dict(msg.infer))
        value_leaves, value_def = jax.tree_util.tree_flatten(msg.value)
        inter_leaves, inter_def = jax.tree_util.tree_flatten(msg.intermediates)
        skeletons[name] = SiteSkeleton(
            type=msg.type,
            name=name,
            is_observed=msg.is_observed,
            fn=fn_split,
            args=args_split,
            kwargs=kwargs_split,
            scale=scale_split,
            infer=infer_split,
            value=value_def,
            intermediates=inter_def,
            cond_indep_stack=tuple(msg.cond_indep_stack),
        )
        payloads[name] = SitePayload(
            fn=fn_arrays,
            args=args_arrays,
            kwargs=kwargs_arrays,
            scale=scale_arrays,
            infer=infer_arrays,
            value=value_leaves,
            intermediates=inter_leaves,
        )
    return skeletons, payloads


def _promote_fn(fn: Any, length: int, name: str, scan_name: str) -> Any:
    numpyro_dist = sys.modules.get("numpyro.distributions")
    if numpyro_dist is not None and isinstance(fn, numpyro_dist.Distribution):
        from numpyro.distributions.batch_util import promote_batch_shape

        fn = promote_batch_shape(fn)
    batch = tuple(fn.batch_shape)
    if not batch or batch[0] != length:
        kind = type(fn)
        raise SiteError(
            name,
            f"site '{name}' inside scan '{scan_name}': its distribution "
            f"{kind.__module__}.{kind.__qualname__}, stacked over {length} steps, reports "
            f"batch shape {batch} instead of one starting with {length}. plait stacks "
            "distributions as pytrees; use numpyro.distributions, or a distribution whose "
            "batch_shape follows the shapes of its parameters.",
        )
    return fn


def _promote_value(value: Any, fn: Any) -> Any:
    """Insert size-1 dims after the time dim so the value's batch dims line up with
    ``fn.batch_shape`` (a plate inside the body with a value that broadcasts)."""
    event_ndim = len(fn.event_shape)
    missing = len(fn.batch_shape) - (jnp.ndim(value) - event_ndim)
    if missing <= 0:
        return value
    shape = jnp.shape(value)
    return jnp.reshape(value, shape[:1] + (1,) * missing + shape[1:])


def _stack_scale(scale: Any, fn: Any) -> Any:
    """A per-step array scale, stacked to ``(T, *s)``, aligned with the batch dims."""
    if fn is None or jnp.ndim(scale) <= 1:
        return scale
    missing = len(fn.batch_shape) - jnp.ndim(scale)
    if missing <= 0:
        return scale
    shape = jnp.shape(scale)
    return jnp.reshape(scale, shape[:1] + (1,) * missing + shape[1:])


def stacked_sites(
    skeletons: Mapping[str, SiteSkeleton],
    payloads: Mapping[str, SitePayload],
    length: int,
    scan_name: str,
) -> dict[str, Message]:
    """The loop's body sites as messages stacked over time, marked :data:`STACKED`.

    Example:
        >>> import jax.numpy as jnp
        >>> from plait import Message
        >>> step = {"d": Message(type="deterministic", name="d", value=jnp.zeros(2))}
        >>> skeletons, payloads = split_trace(step)
        >>> stacked = {"d": payloads["d"]._replace(value=[jnp.zeros((5, 2))])}
        >>> stacked_sites(skeletons, stacked, 5, "f")["d"].value.shape
        (5, 2)
    """
    sites: dict[str, Message] = {}
    for name, skeleton in skeletons.items():
        payload = payloads[name]
        if skeleton.type == "sample":
            fn = _join(skeleton.fn, payload.fn, time_axis=True)
            if any(skeleton.fn.dynamic):
                fn = _promote_fn(fn, length, name, scan_name)
            else:  # the same distribution every step
                fn = fn.expand((length, *fn.batch_shape))
        else:
            fn = skeleton.fn.static[0]
        value = jax.tree_util.tree_unflatten(skeleton.value, payload.value)
        if skeleton.type == "sample":
            value = _promote_value(value, fn)
        scale = _join(skeleton.scale, payload.scale)
        if payload.scale:
            scale = _stack_scale(scale, fn if skeleton.type == "sample" else None)
        infer: InferDict = _join(skeleton.infer, payload.infer)
        sites[name] = Message(
            type=skeleton.type,
            name=name,
            fn=fn,
            args=tuple(_join(skeleton.args, payload.args)),
            kwargs=_join(skeleton.kwargs, payload.kwargs),
            value=value,
            scale=scale,
            is_observed=skeleton.is_observed,
            intermediates=jax.tree_util.tree_unflatten(
                skeleton.intermediates, payload.intermediates
            ),
            cond_indep_stack=list(skeleton.cond_indep_stack),
            infer=infer,
            stash=Stash({STACKED: length}),
        )
    return sites
