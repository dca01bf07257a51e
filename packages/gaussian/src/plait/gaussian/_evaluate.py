"""The chain's coefficients at every step: the traced step evaluated over time.

For each step ``t`` (in processing order) the step's outputs are affine in the chain's
sources ``v`` (the latent carry going in and the chain sites' values): their values at
``v = 0`` are the offsets and ``∂/∂v`` (``jax.jacfwd``, exact for an affine map) the
matrices. Outputs that do not change over time (no dependence on ``xs``, the step index,
the step's key or the rest of the carry) are computed once, the others for every step
at once under ``vmap``. The parts of the carry outside the chain, which may change from
step to step, are computed first by a ``lax.scan`` of the step reduced to them.

Arrays are *chain-major*: a leading axis over the independent chains (the plates the
chain is batched over; size 1 without), then the elements of one chain, flattened.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array, lax, random

from plait.control_flow.plugin_api import ScanCall
from plait.gaussian._structure import ChainPlan

__all__ = ["ChainAxes", "Pieces", "StepSequence", "evaluate", "step_sequence"]


class ChainAxes(NamedTuple):
    """The plates a chain is batched over, and where they sit in each array.

    ``sizes``: the plate sizes, in order; ``positions[name]``: for each array of the
    step (named ``"carry:j"``, ``"site:name"``), the axes of those plates in it.
    """

    sizes: tuple[int, ...]
    positions: dict[str, tuple[int, ...]]

    @property
    def batch(self) -> int:
        return math.prod(self.sizes)

    def axes(self, name: str) -> tuple[int, ...]:
        return self.positions.get(name, ())

    def to_chain(self, a: Array, name: str, trailing: int = 0) -> Array:
        """``a`` with the chain plates first and the rest flattened: ``(B, d)``, or
        ``(B, d, *a.shape[-trailing:])`` keeping ``trailing`` axes (a tril root's)."""
        axes = self.axes(name)
        moved = jnp.moveaxis(a, axes, tuple(range(len(axes)))) if axes else a
        tail = moved.shape[moved.ndim - trailing :] if trailing else ()
        return jnp.reshape(moved, (self.batch, -1, *tail))

    def from_chain(self, c: Array, name: str, shape: tuple[int, ...]) -> Array:
        """The inverse of `to_chain` (no trailing axes) for an array of ``shape``."""
        axes = self.axes(name)
        if not axes:
            return jnp.reshape(c, shape)
        rest = [n for i, n in enumerate(shape) if i not in axes]
        moved = jnp.reshape(c, (*(shape[i] for i in axes), *rest))
        return jnp.moveaxis(moved, tuple(range(len(axes))), axes)


class StepSequence(NamedTuple):
    """The per-step inputs in processing order (leading axis: the steps)."""

    x: list[Array]
    step_index: Array
    keys: list[Array]
    carry: list[Array | None]  # the carry going in, outside the chain (None: chain leaf)


class Pieces(NamedTuple):
    """Per named piece, its array with a leading time axis of size ``T`` or 1."""

    arrays: dict[str, Array]


def _per_step_keys(rng_key: Any, length: int) -> Array:
    def split(key: Any, _: None) -> tuple[Any, Any]:
        key, sub = random.split(key)
        return key, sub

    _, keys = lax.scan(split, rng_key, None, length=length)
    return jnp.asarray(keys)


def step_sequence(plan: ChainPlan, call: ScanCall) -> StepSequence:
    """The inputs of every step, with the non-chain carry computed sequentially if needed."""
    traced = plan.traced
    length = call.length
    x_leaves = jax.tree_util.tree_leaves(call.xs)
    index = jnp.arange(length, dtype=jnp.int32)
    if call.reverse:
        x_leaves = [a[::-1] for a in x_leaves]
        index = index[::-1]
    keys = [] if call.rng_key is None else [_per_step_keys(call.rng_key, length)]
    init = jax.tree_util.tree_leaves(call.init)
    latent = set(plan.latent_carry)
    others = [j for j in range(traced.n_carry) if j not in latent]
    carry: list[Array | None] = [None] * traced.n_carry
    if not others:
        return StepSequence(x_leaves, index, keys, carry)
    used = 0
    for o in used_outputs(plan):
        used |= plan.deps[o]
    needed = any(used & (1 << j) for j in others)
    if not needed:
        for j in others:
            carry[j] = jnp.broadcast_to(jnp.asarray(init[j]), (length, *jnp.shape(init[j])))
    if needed:
        zeros = _zero_inputs(plan)

        def body(c: list[Array], inputs: tuple[list[Array], Array, list[Array]]) -> Any:
            xl, i, kl = inputs
            flat = list(zeros)
            for j, v in zip(others, c, strict=True):
                flat[j] = v
            _fill(flat, plan, xl, i, kl)
            out = traced.fun(*flat)
            return [jnp.asarray(out[j], c_j.dtype) for j, c_j in zip(others, c, strict=True)], c

        start = [jnp.asarray(init[j]) for j in others]
        _, carried = lax.scan(body, start, (x_leaves, index, keys))
        for j, seq in zip(others, carried, strict=True):
            carry[j] = seq
    return StepSequence(x_leaves, index, keys, carry)


def _zero_inputs(plan: ChainPlan) -> list[Array]:
    return [jnp.zeros(a.shape, a.dtype) for a in plan.traced.closed.in_avals]  # type: ignore[attr-defined]


def _fill(
    flat: list[Any], plan: ChainPlan, x: Sequence[Any], index: Any, keys: Sequence[Any]
) -> None:
    groups = plan.traced.inputs
    for p, v in zip(groups["x"], x, strict=True):
        flat[p] = v
    flat[groups["index"][0]] = index
    for p, v in zip(groups["key"], keys, strict=True):
        flat[p] = v


def _chain_sources(plan: ChainPlan) -> list[tuple[int, str]]:
    """The chain's sources in order: (step input position, name for `ChainAxes`)."""
    return [(j, f"carry:{j}") for j in plan.latent_carry] + [
        (p, f"site:{s.name}") for p, s in zip(plan.chain_inputs, plan.chain, strict=True)
    ]


def evaluate(plan: ChainPlan, axes: ChainAxes, seq: StepSequence) -> Pieces:
    """Offsets, matrices and noise roots of every piece of the chain, over time.

    Pieces (each with a leading time axis, ``T`` or 1, then the chain axis ``B``):
    ``"off:<piece>"`` ``(., B, d)``, ``"jac:<piece>"`` ``(., B, d, n)``, ``"root:<site>"``,
    ``"mask:<site>"`` and ``"value:<site>"`` (emissions), where a piece is
    ``"carry:j"`` (a latent carry leaf going out) or ``"site:<name>"`` (a chain site's or
    an emission's mean).
    """
    traced = plan.traced
    sources = _chain_sources(plan)
    in_avals = traced.closed.in_avals
    sizes = [
        math.prod(in_avals[p].shape) // axes.batch  # type: ignore[attr-defined]
        for p, _ in sources
    ]
    n = sum(sizes)
    zeros = _zero_inputs(plan)
    varying: dict[str, bool] = {}
    n_c = traced.n_carry

    def outputs_of(site_outputs: dict[str, list[int]], key: str) -> list[int]:
        return [n_c + i for i in site_outputs.get(key, ())]

    linear: dict[str, list[int]] = {f"carry:{j}": [j] for j in plan.latent_carry}
    for s in (*plan.chain, *plan.emissions):
        linear[f"site:{s.name}"] = outputs_of(s.outputs, "loc")
    aux: dict[str, tuple[list[int], int]] = {}
    for s in (*plan.chain, *plan.emissions):
        aux[f"root:{s.name}"] = (outputs_of(s.outputs, "root"), 2 if s.gaussian == "tril" else 0)
    for s in plan.emissions:
        if "mask" in s.outputs:
            aux[f"mask:{s.name}"] = (outputs_of(s.outputs, "mask"), 0)
        aux[f"value:{s.name}"] = (outputs_of(s.outputs, "value"), 0)
    for name, positions in linear.items():
        varying[name] = any(plan.varying[o] for o in positions)
    for name, (positions, _) in aux.items():
        varying[name] = any(plan.varying[o] for o in positions)

    emission_shapes = plan.emission_shapes

    def shaped(name: str, out: list[Any], positions: list[int], trailing: int = 0) -> Array:
        """One output of the step, chain-major (an emission's broadcast to its full shape)."""
        kind, piece = name.split(":", 1)
        array = out[positions[0]]
        if kind == "carry":
            return axes.to_chain(array, name)
        full = emission_shapes.get(piece)
        if full is not None:
            target = full
            if kind == "root" and trailing:
                target = (*full, full[-1])
            elif kind == "mask" and array.ndim < len(full):
                target = full[:-1]
            array = jnp.broadcast_to(array, target)
        return axes.to_chain(array, f"site:{piece}", trailing)

    def point(x: list[Any], index: Any, keys: list[Any], carry: list[Any]) -> dict[str, Array]:
        def g(v: Array) -> tuple[dict[str, Array], dict[str, Array]]:
            flat = list(zeros)
            for j, c in enumerate(carry):
                if c is not None:
                    flat[j] = c
            _fill(flat, plan, x, index, keys)
            offset = 0
            for (p, name), size in zip(sources, sizes, strict=True):
                block = jnp.broadcast_to(v[offset : offset + size], (axes.batch, size))
                shape = tuple(in_avals[p].shape)  # type: ignore[attr-defined]
                flat[p] = axes.from_chain(block, name, shape).astype(in_avals[p].dtype)  # type: ignore[attr-defined]
                offset += size
            out = traced.fun(*flat)
            lin = {name: shaped(name, out, ps) for name, ps in linear.items()}
            extra = {name: shaped(name, out, ps, t) for name, (ps, t) in aux.items()}
            return lin, {**extra, **{f"off:{k}": a for k, a in lin.items()}}

        dtype = (
            jnp.result_type(*[in_avals[p].dtype for p, _ in sources]) if sources else jnp.float32
        )  # type: ignore[attr-defined]
        jac, rest = jax.jacfwd(g, has_aux=True)(jnp.zeros((n,), dtype))
        return {**{f"jac:{k}": a for k, a in jac.items()}, **rest}

    t_inputs = (seq.x, seq.step_index, seq.keys, seq.carry)
    first = jax.tree_util.tree_map(lambda a: a[0], t_inputs)
    once = point(*first)
    if any(varying.values()):
        every = jax.vmap(point)(*t_inputs)
    arrays: dict[str, Array] = {}
    for key, value in once.items():
        base = key.split(":", 1)[1] if key.startswith(("jac:", "off:")) else key
        if varying.get(base, False):
            arrays[key] = every[key]
        else:
            arrays[key] = value[None]
    return Pieces(arrays)


def used_outputs(plan: ChainPlan) -> list[int]:
    """The step outputs the chain reads: latent carry, means, roots, masks, observations."""
    n_c = plan.traced.n_carry
    used = list(plan.latent_carry)
    for s in (*plan.chain, *plan.emissions):
        for key in ("loc", "root", "mask", "value"):
            used += [n_c + i for i in s.outputs.get(key, ())]
    return used
