"""Combining the branches of a ``cond`` element by element: :class:`BranchDistribution` and
:func:`combine_branches`.

When the branch index is batched (a predicate inside a plate, or an enumerated discrete
site) or the branches' sites cannot share one ``lax.switch`` (different distribution
classes, a site only some branches have), every branch is evaluated and each site is
combined per element: its value is the chosen branch's, and its distribution is a
:class:`BranchDistribution`, whose ``log_prob`` is the chosen branch's. A latent site that
the chosen branch lacks keeps the value and the density of the first branch that has it
(so it integrates out: the rest of the model does not depend on it there); an observed site
that the chosen branch lacks contributes nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from plait import InferDict, Message, Stash, Trace
from plait.control_flow._errors import ControlFlowTypeError
from plait.errors import SiteError

__all__ = ["BranchDistribution", "combine_branches", "select", "select_tree"]


def select(index: Array, options: Sequence[Any]) -> Array:
    """``options[index]`` element by element (``index`` broadcasts against the options,
    aligned on the right as ``jnp.where`` aligns).

    Example:
        >>> import jax.numpy as jnp
        >>> select(jnp.array([1, 0, 2]), [jnp.zeros(3), jnp.ones(3), jnp.full(3, 2.0)])
        Array([1., 0., 2.], dtype=float32)
    """
    out = jnp.asarray(options[-1])
    for j in range(len(options) - 2, -1, -1):
        out = jnp.where(index == j, options[j], out)
    return out


def select_tree(index: Array, trees: Sequence[Any], what: str) -> Any:
    """:func:`select` on every leaf of same-structured pytrees (the branches' outputs)."""
    structure: Any = jax.tree_util.tree_structure(trees[0])
    for j, tree in enumerate(trees[1:], start=1):
        if not bool(jax.tree_util.tree_structure(tree) == structure):
            raise ControlFlowTypeError(
                f"{what}: branch {j} returns {jax.tree_util.tree_structure(tree)}, but branch 0 "
                f"returns {structure}; every branch must return the same structure."
            )
    leaves = [jax.tree_util.tree_leaves(tree) for tree in trees]
    picked = []
    for k, options in enumerate(zip(*leaves, strict=True)):
        dtypes = {jnp.result_type(o) for o in options}
        if len(dtypes) > 1:
            raise ControlFlowTypeError(
                f"{what}: output leaf {k} has dtypes {sorted(str(d) for d in dtypes)} across the "
                "branches; every branch must return the same dtypes."
            )
        try:
            picked.append(select(index, options))
        except (ValueError, TypeError) as error:
            shapes = [jnp.shape(o) for o in options]
            raise ControlFlowTypeError(
                f"{what}: output leaf {k} has shapes {shapes} across the branches, which do not "
                f"broadcast with the branch index of shape {jnp.shape(index)}: {error}"
            ) from error
    return jax.tree_util.tree_unflatten(structure, picked)


def _promote(fn: Any) -> Any:
    """A numpyro distribution with its batch shape read again from its parameters (after
    a loop stacked them)."""
    numpyro_dist = sys.modules.get("numpyro.distributions")
    if numpyro_dist is not None and isinstance(fn, numpyro_dist.Distribution):
        from numpyro.distributions.batch_util import promote_batch_shape

        return promote_batch_shape(fn)
    return fn


@jax.tree_util.register_pytree_node_class
class BranchDistribution:
    """The distribution of a site whose branches disagree: ``branches[index]`` element by
    element (a branch entry ``None``: that branch lacks the observed site, log density 0).

    Attributes:
        index: the chosen branch, broadcast to the batch shape.
        branches: one distribution (or ``None``) per branch.

    Example:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> d = BranchDistribution(jnp.array([0, 1]), (dist.Normal(0.0, 1.0), dist.Laplace()))
        >>> d.batch_shape, [round(float(v), 4) for v in d.log_prob(jnp.zeros(2))]
        ((2,), [-0.9189, -0.6931])
    """

    has_enumerate_support = False

    def __init__(self, index: Any, branches: Sequence[Any]) -> None:
        self.index = jnp.asarray(index)
        self.branches = tuple(branches)

    @property
    def _present(self) -> list[Any]:
        return [b for b in self.branches if b is not None]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.index.shape)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self._present[0].event_shape)

    @property
    def event_dim(self) -> int:
        return len(self.event_shape)

    @property
    def support(self) -> Any:
        supports = [b.support for b in self._present]
        first = supports[0]
        for other in supports[1:]:
            if not _same_support(first, other):
                raise SiteError(
                    None,
                    f"the branches of this site have different supports ({first} and {other}); "
                    "a site's support must be the same in every branch.",
                )
        return first

    def _index_for(self, shape: tuple[int, ...], event_ndim: int) -> Array:
        index = self.index
        batch_ndim = len(shape) - event_ndim
        if batch_ndim > index.ndim:
            index = jnp.reshape(index, (1,) * (batch_ndim - index.ndim) + index.shape)
        return jnp.reshape(index, index.shape + (1,) * event_ndim)

    def log_prob(self, value: Any) -> Array:
        value = jnp.asarray(value)
        lps = [None if b is None else jnp.asarray(b.log_prob(value)) for b in self.branches]
        shapes = [lp.shape for lp in lps if lp is not None]
        shape = jnp.broadcast_shapes(self.batch_shape, *shapes)
        dtype = jnp.result_type(*[lp for lp in lps if lp is not None])
        options = [
            jnp.zeros(shape, dtype) if lp is None else jnp.broadcast_to(lp, shape) for lp in lps
        ]
        return select(self._index_for(shape, 0), options)

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        draws: list[Any] = [
            None if b is None else b.sample(key, sample_shape) for b in self.branches
        ]
        first = next(d for d in draws if d is not None)
        shape = tuple(sample_shape) + self.batch_shape + self.event_shape
        options = [jnp.broadcast_to(first if d is None else d, shape) for d in draws]
        return select(self._index_for(shape, self.event_dim), options)

    def expand(self, batch_shape: tuple[int, ...]) -> BranchDistribution:
        batch_shape = tuple(batch_shape)
        return BranchDistribution(
            jnp.broadcast_to(self.index, batch_shape),
            [None if b is None else b.expand(batch_shape) for b in self.branches],
        )

    def mask(self, mask: Any) -> BranchDistribution:
        return BranchDistribution(
            self.index, [None if b is None else b.mask(mask) for b in self.branches]
        )

    def tree_flatten(self) -> tuple[tuple[Any, ...], None]:
        return (self.index, self.branches), None

    @classmethod
    def tree_unflatten(cls, aux: None, children: tuple[Any, ...]) -> BranchDistribution:
        new = cls.__new__(cls)
        new.index = children[0]
        new.branches = tuple(None if b is None else _promote(b) for b in children[1])
        return new

    def __repr__(self) -> str:
        names = ", ".join("None" if b is None else type(b).__name__ for b in self.branches)
        return f"BranchDistribution(batch_shape={self.batch_shape}, branches=({names}))"


def _same_support(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return type(a) is type(b) and (bool(a == b) or repr(a) == repr(b))
    except Exception:
        return repr(a) == repr(b)


def _all_same(values: Sequence[Any]) -> bool:
    """Whether every value is the first: the same object, or equal concrete arrays."""
    first = values[0]
    if all(v is first for v in values):
        return True
    if any(isinstance(v, jax.core.Tracer) for v in values):
        return False
    try:
        arrays = [np.asarray(v) for v in values]
    except TypeError:
        return False
    return all(a.shape == arrays[0].shape and np.array_equal(a, arrays[0]) for a in arrays)


def _fold_sample_shape(msg: Message) -> Any:
    fn = msg.fn
    sample_shape = tuple(msg.kwargs.get("sample_shape", ()))
    if sample_shape:
        fn = fn.expand(sample_shape + tuple(fn.batch_shape))
    return fn


def _event_ndim(msg: Message) -> int:
    return len(msg.fn.event_shape) if msg.type == "sample" else 0


def _check_same(name: str, what: str, label: str, found: dict[int, Any]) -> None:
    values = list(found.values())
    if any(v != values[0] for v in values[1:]):
        listed = ", ".join(f"branch {j}: {v}" for j, v in found.items())
        raise SiteError(
            name,
            f"site '{name}' in the branches of {label} has different {what} ({listed}); a "
            f"site that several branches share must have the same {what} in each.",
        )


def _combine_site(name: str, index: Array, sites: list[Message | None], label: str) -> Message:
    present = {j: s for j, s in enumerate(sites) if s is not None}
    first = next(iter(present.values()))
    _check_same(name, "type", label, {j: s.type for j, s in present.items()})
    _check_same(name, "observedness", label, {j: s.is_observed for j, s in present.items()})
    _check_same(
        name, "plates", label, {j: [f.name for f in s.cond_indep_stack] for j, s in present.items()}
    )
    _check_same(
        name, "value dtype", label, {j: str(jnp.result_type(s.value)) for j, s in present.items()}
    )
    latent = first.type == "sample" and not first.is_observed
    fns: list[Any] = []
    if first.type == "sample":
        folded = {j: _fold_sample_shape(s) for j, s in present.items()}
        _check_same(
            name, "event shape", label, {j: tuple(f.event_shape) for j, f in folded.items()}
        )
        fallback = folded[next(iter(folded))]
        fns = [folded.get(j, fallback if latent else None) for j in range(len(sites))]
        if latent:
            BranchDistribution(index, fns).support  # noqa: B018  (raises on a mismatch)
    event_ndim = _event_ndim(first)
    values = [(present.get(j) or first).value for j in range(len(sites))]
    batch_shapes = [jnp.shape(v)[: jnp.ndim(v) - event_ndim] for v in values]
    try:
        batch = tuple(
            jnp.broadcast_shapes(
                tuple(jnp.shape(index)),
                *batch_shapes,
                *[tuple(f.batch_shape) for f in fns if f is not None],
            )
        )
    except ValueError:
        shapes = {j: tuple(jnp.shape(s.value)) for j, s in present.items()}
        raise SiteError(
            name,
            f"site '{name}' in the branches of {label} has value shapes "
            f"{', '.join(f'branch {j}: {v}' for j, v in shapes.items())}, which do not broadcast "
            f"with each other and the branch index (shape {tuple(jnp.shape(index))}).",
        ) from None
    full_index = jnp.broadcast_to(index, batch)
    if _all_same(values):  # one value for every branch (an observation, a shared support)
        value = values[0]
    else:
        event_shape = tuple(jnp.shape(values[0])[jnp.ndim(values[0]) - event_ndim :])
        value_index = jnp.reshape(full_index, batch + (1,) * event_ndim)
        value = select(value_index, [jnp.broadcast_to(v, batch + event_shape) for v in values])
    scales = [s.scale for s in present.values()]
    if all(s is None for s in scales):
        scale: Any = None
    elif all(isinstance(s, int | float) and s == scales[0] for s in scales):
        scale = scales[0]
    else:
        options = [
            1.0 if (present.get(j) is None or present[j].scale is None) else present[j].scale
            for j in range(len(sites))
        ]
        scale = select(full_index, [jnp.broadcast_to(jnp.asarray(o), batch) for o in options])
    kwargs = dict(first.kwargs)
    if "rng_key" in kwargs:
        kwargs["rng_key"] = None
    if "sample_shape" in kwargs:
        kwargs["sample_shape"] = ()
    infer: InferDict = first.infer.copy()
    return Message(
        type=first.type,
        name=name,
        fn=BranchDistribution(full_index, fns) if first.type == "sample" else first.fn,
        args=first.args,
        kwargs=kwargs,
        value=value,
        scale=scale,
        is_observed=first.is_observed,
        cond_indep_stack=list(first.cond_indep_stack),
        infer=infer,
        stash=Stash(first.stash),
    )


_SITE_TYPES = frozenset({"sample", "deterministic", "param", "mutable"})


def combine_branches(index: Array, traces: Sequence[Trace], label: str) -> dict[str, Message]:
    """The sites of every branch, combined element by element by ``index`` (see the module
    docstring), in the order they first appear (branch 0's first).

    Raises:
        SiteError: a site cannot be combined (its branches disagree on its type, its being
            observed, its plates, event shape, value dtype, or, for a latent site, its
            support; or its value shapes do not broadcast).
    """
    names: dict[str, None] = {}
    for tr in traces:
        for name, site in tr.items():
            if site.type in _SITE_TYPES:
                names[name] = None
    return {
        name: _combine_site(name, index, [tr.get(name) for tr in traces], label) for name in names
    }
