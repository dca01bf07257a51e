"""Priors over a parameter pytree: which leaf gets which distribution, and the draws.

Shared by every ``random_*`` function. A leaf is named by its path in the pytree; each
sampled leaf becomes a ``sample`` site ``f"{module}{divider}{path}"`` whose distribution is
the prior expanded to the leaf's shape with every dim an event dim, so one leaf is one
site with a scalar log density (as NumPyro's ``random_flax_module`` does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
from jax.tree_util import DictKey, FlattenedIndexKey, GetAttrKey, SequenceKey, keystr

from plait import Distribution, as_distribution, sample
from plait.errors import SiteError
from plait.handlers import scope

__all__ = ["ParamShape", "Prior", "PriorPlan", "dotted_path", "keystr_path", "plan_priors"]

Prior: TypeAlias = (
    Distribution | Mapping[str, Distribution] | Callable[[str, tuple[int, ...]], Distribution]
)
"""A prior over a network's parameters: one distribution for every leaf, a dict from leaf
path to distribution (leaves it does not name stay learnable parameters), or a callable
``(path, shape) -> distribution``."""


@dataclass(frozen=True, slots=True)
class ParamShape:
    """Stands in the ``{name}$params`` site of a ``random_*`` network for a leaf drawn
    from its prior: it keeps the leaf's shape and holds no array, so an optimiser sees
    nothing to fit there (NumPyro's ``ParamShape``).

    Example:
        >>> import jax
        >>> from plait.nn import ParamShape
        >>> jax.tree.leaves({"w": ParamShape((3, 2))})
        []
    """

    shape: tuple[int, ...]


jax.tree_util.register_pytree_node(
    ParamShape,
    lambda p: ((), p.shape),
    lambda shape, _: ParamShape(shape),
)


def _is_param_shape(x: object) -> bool:
    return isinstance(x, ParamShape)


def dotted_path(path: Sequence[Any]) -> str:
    """A leaf's path with its keys joined by dots: ``[(W, b), ...]`` gives ``"0.0"``,
    ``{"l1": {"kernel": ...}}`` gives ``"l1.kernel"`` (NumPyro's Flax naming)."""
    parts = []
    for key in path:
        if isinstance(key, DictKey):
            parts.append(str(key.key))
        elif isinstance(key, SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, GetAttrKey):
            parts.append(key.name)
        elif isinstance(key, FlattenedIndexKey):
            parts.append(str(key.key))
        else:
            parts.append(str(key))
    return ".".join(parts)


def keystr_path(path: Sequence[Any]) -> str:
    """A leaf's path as ``jax.tree_util.keystr`` writes it, without the leading dot:
    ``"layers[0].weight"`` (NumPyro's Equinox naming)."""
    text = keystr(tuple(path))
    return text[1:] if text.startswith(".") else text


def _leaf_shape(leaf: Any) -> tuple[int, ...]:
    if isinstance(leaf, ParamShape):
        return leaf.shape
    return tuple(jnp.shape(leaf))


def _full_prior(module: str, site: str, prior: Any, shape: tuple[int, ...]) -> Distribution:
    """``prior`` expanded to ``shape`` with every dim an event dim."""
    d = as_distribution(site, prior)
    event = tuple(d.event_shape)
    n_batch = len(shape) - len(event)
    if n_batch < 0 or shape[n_batch:] != event:
        raise SiteError(
            site,
            f"site '{site}' of network '{module}': the prior has event shape {event}, which "
            f"does not end the parameter's shape {shape}. Give this parameter a prior whose "
            "event shape is () or a suffix of its shape.",
        )
    batch = shape[:n_batch]
    try:
        full = d.expand(batch)
    except ValueError as e:
        raise SiteError(
            site,
            f"site '{site}' of network '{module}': a prior of batch shape "
            f"{tuple(d.batch_shape)} cannot be expanded to the parameter's shape {shape}. "
            "Use a scalar prior or one whose batch shape broadcasts to it.",
        ) from e
    if batch:
        to_event = getattr(full, "to_event", None)
        if to_event is None:
            raise SiteError(
                site,
                f"site '{site}' of network '{module}': the prior "
                f"{type(d).__qualname__} has no to_event(); use a numpyro.distributions "
                "prior.",
            )
        full = to_event(len(batch))
    return full


@dataclass(frozen=True, slots=True)
class PriorPlan:
    """For each leaf of a parameter pytree: its path and its full prior (``None``: the
    leaf stays a learnable parameter)."""

    module: str
    treedef: Any
    leaves: list[Any]
    paths: list[str]
    priors: list[Distribution | None]

    def placeholders(self) -> Any:
        """The pytree to register as ``{module}$params``: :class:`ParamShape` where a
        leaf is drawn, the leaf itself where it is learnt."""
        return self.treedef.unflatten(
            [
                leaf if d is None else ParamShape(_leaf_shape(leaf))
                for leaf, d in zip(self.leaves, self.priors, strict=True)
            ]
        )

    def draw(self, divider: str) -> Any:
        """Sample every drawn leaf under ``scope(prefix=module)``; the parameter pytree
        with the draws in place."""
        out = []
        with scope(prefix=self.module, divider=divider):
            for leaf, path, d in zip(self.leaves, self.paths, self.priors, strict=True):
                if d is None:
                    out.append(leaf)
                else:
                    out.append(sample(path, d))
        return self.treedef.unflatten(out)


def plan_priors(
    module: str,
    params: Any,
    prior: Prior,
    *,
    divider: str,
    path_of: Callable[[Sequence[Any]], str],
) -> PriorPlan:
    """Match ``prior`` to the leaves of ``params`` (arrays or :class:`ParamShape`).

    Raises:
        SiteError: a dict prior names no leaf, or a leaf known only by its shape has no
            prior.
    """
    with_path, treedef = jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_param_shape)
    paths = [path_of(path) for path, _ in with_path]
    leaves = [leaf for _, leaf in with_path]
    priors: list[Distribution | None] = []
    if isinstance(prior, Mapping):
        unknown = sorted(set(prior) - set(paths))
        if unknown:
            raise SiteError(
                f"{module}$params",
                f"network '{module}': the prior names {unknown}, which are not parameters "
                f"of the network; its parameters are {paths}.",
            )
    for path, leaf in zip(paths, leaves, strict=True):
        site = f"{module}{divider}{path}"
        shape = _leaf_shape(leaf)
        if isinstance(prior, Mapping):
            chosen: Any = prior.get(path)
        elif callable(prior) and not isinstance(prior, Distribution):
            chosen = prior(path, shape)
        else:
            chosen = prior
        if chosen is None:
            if isinstance(leaf, ParamShape):
                raise SiteError(
                    site,
                    f"site '{site}' of network '{module}' has no prior, and the value of "
                    f"'{module}$params' holds only its shape {shape}. Give it a prior or "
                    "substitute an array for it.",
                )
            priors.append(None)
        else:
            priors.append(_full_prior(module, site, chosen, shape))
    return PriorPlan(module, treedef, leaves, paths, priors)
