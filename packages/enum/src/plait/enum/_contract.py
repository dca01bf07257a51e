"""Tensor variable elimination over plates, in log space, with a backward pass.

The sum-product of a plated factor graph (Obermeyer et al. 2019, "Tensor Variable
Elimination for Plated Factor Graphs", Alg. 1; Pyro's ``contract_tensor_tree``):
repeatedly take the factors of the deepest set of plates (the leaf ordinal), sum out
the variables that live exactly there (one ``logsumexp_einsum`` per connected group,
in opt_einsum's order), then take the product over the plates that no remaining
variable needs (a sum of logs along the plate axis) and put the result one level up.

Every elimination is recorded, so that the backward pass can draw the eliminated
variables given the ones eliminated after them: forward-filter backward-sample
(temperature 1) or, with the max semiring, the MAP assignment (temperature 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
from jax import Array

from plait.enum._factors import Factor, align, einsum, select, total
from plait.errors import SiteError

__all__ = ["Contraction", "Elimination", "backward", "contract"]


@dataclass(frozen=True)
class Elimination:
    """One recorded step: ``variables`` summed out of ``factors`` inside ``ordinal``."""

    factors: tuple[Factor, ...]
    variables: tuple[str, ...]
    ordinal: frozenset[str]


@dataclass
class Contraction:
    """The result of :func:`contract`: factors over the kept variables, and the steps."""

    factors: list[Factor]
    steps: list[Elimination] = field(default_factory=list)

    def log_value(self) -> Array:
        """The sum of the result factors (a scalar when nothing was kept)."""
        if not self.factors:
            return jnp.zeros(())
        return total(self.factors).array


@dataclass(frozen=True)
class Plate:
    """A plate to contract: its ``size`` and the ``scale`` of its product (subsampling)."""

    size: int
    scale: float = 1.0


def contract(
    factors: Sequence[Factor],
    variables: Mapping[str, frozenset[str]],
    plates: Mapping[str, Plate],
    keep: frozenset[str] = frozenset(),
    semiring: str = "log",
) -> Contraction:
    """Sum out every variable in ``variables`` except ``keep``, and the plates.

    Args:
        factors: log-factors; their axes are variables, plates, or batch axes (anything
            else, carried along untouched).
        variables: every variable's ordinal (the plates it lives in); the kept ones too.
        plates: the plates to take products over.
        keep: variables to keep (with the plates they need).
        semiring: ``"log"`` (sum-product) or ``"max"`` (max-product).

    Returns:
        The factors over the kept variables (and batch axes), and the recorded steps.

    Raises:
        SiteError: the graph couples variables of different plates inside a plate
            (not tractable by plate-wise elimination).
    """
    pool = [f for f in factors]
    done: list[Factor] = []
    steps: list[Elimination] = []
    summed = frozenset(v for v in variables if v not in keep)

    def needed(f: Factor) -> frozenset[str]:
        return frozenset().union(*(variables[a] for a in f.axes if a in variables))

    while pool:
        leaf = max((f.ordinal for f in pool), key=lambda o: (len(o), sorted(o)))
        group = [f for f in pool if f.ordinal == leaf]
        pool = [f for f in pool if f.ordinal != leaf]
        leaf_vars = {a for f in group for a in f.axes if a in summed and variables[a] == leaf}
        for members, names in _components(group, leaf_vars):
            if names:
                out_axes = tuple(
                    dict.fromkeys(a for f in members for a in f.axes if a not in names)
                )
                result = einsum(members, out_axes, semiring, leaf)
                steps.append(Elimination(tuple(members), tuple(sorted(names)), leaf))
            else:
                (result,) = members
            parent = needed(result)
            if not parent <= leaf or (parent == leaf and any(a in summed for a in result.axes)):
                names_here = sorted(a for a in result.axes if a in variables)
                raise SiteError(
                    None,
                    f"the enumerated variables {names_here} (plates "
                    f"{ {a: sorted(variables[a]) for a in names_here} }) meet in a factor "
                    f"inside plates {sorted(leaf)}; plate-wise elimination cannot sum them "
                    "out. Move the sites so that a variable inside a plate depends only on "
                    "variables of enclosing plates.",
                )
            if parent == leaf:
                done.append(result)
                continue
            pool.append(_product(result, leaf - parent, plates, parent))
    return Contraction(done, steps)


def _product(
    f: Factor, contracted: frozenset[str], plates: Mapping[str, Plate], parent: frozenset[str]
) -> Factor:
    """The product over the plates ``contracted`` (a sum of logs along their axes)."""
    array, axes = f.array, f.axes
    for p in sorted(contracted):
        plate = plates[p]
        if p in axes:
            k = axes.index(p)
            array = jnp.sum(array, axis=k)
            axes = axes[:k] + axes[k + 1 :]
            factor = plate.scale
        else:
            factor = plate.size * plate.scale
        if factor != 1:
            array = array * factor
    return Factor(array, axes, parent)


def _components(group: Sequence[Factor], names: set[str]) -> list[tuple[list[Factor], set[str]]]:
    """Connected components of ``group`` through shared variables of ``names``."""
    parent = list(range(len(group)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, f in enumerate(group):
        for a in f.axes:
            if a in names:
                if a in owner:
                    parent[find(i)] = find(owner[a])
                else:
                    owner[a] = i
    comps: dict[int, tuple[list[Factor], set[str]]] = {}
    for i, f in enumerate(group):
        members, comp_names = comps.setdefault(find(i), ([], set()))
        members.append(f)
        comp_names.update(a for a in f.axes if a in names)
    return list(comps.values())


def backward(
    contraction: Contraction,
    key: Array | None,
    values: Mapping[str, Factor] | None = None,
) -> dict[str, Factor]:
    """Draw (``key``) or maximise (``key=None``) the eliminated variables, last first.

    Each step's variables are drawn from their conditional given the variables
    eliminated after them (already drawn) and ``values`` (the kept ones): forward-filter
    backward-sample with the sum-product steps of :func:`contract`, or the MAP
    assignment with its max-product steps.

    Returns:
        Every eliminated variable's value: integer indices over its plates and the
        batch axes.
    """
    out: dict[str, Factor] = dict(values or {})
    for step in reversed(contraction.steps):
        conditioned = [select(f, out) for f in step.factors]
        logits = total(conditioned, step.ordinal)
        rest = tuple(a for a in logits.axes if a not in step.variables)
        array = align(logits.array, logits.axes, rest + step.variables)
        sizes = array.shape[len(rest) :]
        flat = jnp.reshape(array, (*array.shape[: len(rest)], -1))
        if key is None:
            choice = jnp.argmax(flat, axis=-1)
        else:
            key, sub = jax.random.split(key)
            choice = jax.random.categorical(sub, flat, axis=-1)
        for name, idx in zip(step.variables, jnp.unravel_index(choice, sizes), strict=True):
            out[name] = Factor(idx.astype(jnp.int32), rest, step.ordinal)
    return out
