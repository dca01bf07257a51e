"""An enumerated scan's vectorised steps as a chain, contracted by ``plait.kernels``.

Each step's factors are reduced (tensor variable elimination, time kept as a batch
axis) to factors over the step's state ``s_t`` and the previous one ``s_{t-1}``, where
the state holds every markov variable at lags ``0 .. L_v - 1`` (``L_v``: the largest lag
at which ``v`` is used, at most the history). Factors over ``s_{t-1}`` (with or without
``s_t``) form the transition ``A_t``, factors over ``s_t`` only the emission ``b_t``, as
``plait.kernels.FactoredSteps``; a transition that does not change over time is shared
(never broadcast over time). The chain is contracted backwards, from the last step to
the first, into a factor over the first step's previous state: the unrolled
``_PREV_`` variables, which the global elimination then sums out with the rest.
With history 0 the time axis is a plate instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from plait.enum._contract import Contraction, Plate, backward, contract
from plait.enum._factors import Factor, align, select, total
from plait.enum._record import ScanRecord
from plait.errors import PlaitError, SiteError
from plait.kernels import (
    FactoredSteps,
    auto_strategy,
    chain_logsumexp,
    chain_max,
    chain_mode,
    chain_sample,
    shared_backward,
)

__all__ = ["Chain", "chain_factors"]

_PREV = "_PREV_"
_S_PREV = "__state_prev"
_S_CUR = "__state"


def _lag(name: str, variables: Mapping[str, Any]) -> tuple[str, int] | None:
    j = 0
    while name.startswith(_PREV):
        name = name[len(_PREV) :]
        j += 1
        if name in variables:
            return name, j
    return None


@dataclass
class Chain:
    """One scan's contribution to the global problem, and how to draw its states.

    Attributes:
        factors: factors for the global elimination (the chain over the first state,
            per-step constants summed over time, or the step factors for history 0).
        variables: variables those factors add (history 0: the per-step ones).
        plates: plates those factors add.
    """

    record: ScanRecord
    semiring: str
    factors: list[Factor] = field(default_factory=list)
    variables: dict[str, frozenset[str]] = field(default_factory=dict)
    plates: dict[str, Plate] = field(default_factory=dict)
    local: Contraction | None = None
    transition: Factor | None = None
    emission: Factor | None = None
    coords: list[tuple[str, int]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    # -- infer_discrete ------------------------------------------------------------------
    def draw(self, values: Mapping[str, Factor], key: Array | None) -> dict[str, Factor]:
        """The step variables' values (with the time axis) given the global draws."""
        record = self.record
        if record.history == 0:
            return {v: values[v] for v in record.variables if v in values}
        out: dict[str, Factor] = {}
        states: dict[str, Factor] = {}
        if self.transition is not None and self.emission is not None:
            states = self._draw_states(values, key)
        if self.local is not None:
            given = dict(values)
            given.update(states)
            local_key = None if key is None else jax.random.fold_in(key, 1)
            drawn = backward(self.local, local_key, given)
            given.update(drawn)
            states = given
        for var in record.variables:
            if var in states:
                out[var] = states[var]
        return out

    def _draw_states(self, values: Mapping[str, Factor], key: Array | None) -> dict[str, Factor]:
        record = self.record
        assert self.transition is not None and self.emission is not None
        prev_names = ["_PREV_" * (j + 1) + v for v, j in self.coords]
        cur_names = ["_PREV_" * j + v for v, j in self.coords]
        first = [values[n] for n in prev_names]
        plates = tuple(dict.fromkeys(a for f in first for a in f.axes))
        index = _ravel([align(f.array, f.axes, plates) for f in first], self.sizes)
        given = {a: values[a] for a in self.transition.axes if a in values}
        trans = select(self.transition, given)
        emit = select(self.emission, {a: values[a] for a in self.emission.axes if a in values})
        time = record.time
        lead = tuple(
            a
            for a in dict.fromkeys((*trans.axes, *emit.axes, *plates))
            if a not in (time, _S_PREV, _S_CUR)
        )
        a = align(trans.array, trans.axes, (*lead, time, _S_PREV, _S_CUR))
        b = align(emit.array, emit.axes, (*lead, time, _S_CUR))
        b = jnp.broadcast_to(b, (*b.shape[:-2], record.steps, b.shape[-1]))
        init_index = align(index, plates, lead)
        num = a.shape[-1]
        init = jnp.where(jnp.arange(num) == init_index[..., None], 0.0, -jnp.inf).astype(a.dtype)
        strategy = "auto" if record.strategy == "tree" else record.strategy
        steps = FactoredSteps(a, b)
        if key is None:
            path = chain_mode(init, steps, strategy=strategy)  # type: ignore[arg-type]
        else:
            path = chain_sample(key, init, steps, strategy=strategy)  # type: ignore[arg-type]
        all_states = jnp.concatenate([path.initial_state[..., None], path.states], axis=-1)
        out: dict[str, Factor] = {}
        cur = _unravel(all_states[..., 1:], self.sizes)
        prev = _unravel(all_states[..., :-1], self.sizes)
        for k, name in enumerate(cur_names):
            out.setdefault(name, Factor(jnp.moveaxis(cur[k], -1, 0), (time, *lead), frozenset()))
        for k, name in enumerate(prev_names):
            if name not in cur_names:
                out[name] = Factor(jnp.moveaxis(prev[k], -1, 0), (time, *lead), frozenset())
        return out


def _ravel(parts: list[Array], sizes: list[int]) -> Array:
    index = jnp.zeros(jnp.broadcast_shapes(*(p.shape for p in parts)), jnp.int32)
    for p, n in zip(parts, sizes, strict=True):
        index = index * n + p
    return index


def _unravel(index: Array, sizes: list[int]) -> list[Array]:
    out = []
    for n in reversed(sizes):
        out.append(index % n)
        index = index // n
    return out[::-1]


def chain_factors(
    record: ScanRecord,
    semiring: str,
    outer: Mapping[str, frozenset[str]],
    factors: list[Factor],
) -> Chain:
    """Reduce a scan's step factors to what the global elimination needs (a :class:`Chain`)."""
    chain = Chain(record, semiring)
    time = record.time
    if record.history == 0:
        plate = frozenset({time})
        chain.plates = {**record.plates, time: Plate(record.steps)}
        chain.factors = [Factor(f.array, f.axes, f.ordinal | plate) for f in factors]
        chain.variables = {v: o | plate for v, o in record.variables.items()}
        return chain
    names = dict.fromkeys(a for f in factors for a in f.axes)
    markov: dict[str, int] = {}
    lagged: dict[str, tuple[str, int]] = {}
    for a in names:
        found = _lag(a, record.variables)
        if found is not None:
            lagged[a] = found
            markov[found[0]] = max(markov.get(found[0], 0), found[1])
    unknown = [
        a
        for a in names
        if a not in record.variables
        and a not in lagged
        and a not in outer
        and a not in record.plates
        and a != time
    ]
    if unknown:
        raise SiteError(
            None,
            f"scan '{record.name}': the step's log-densities vary along {unknown}, which are "
            "neither plates nor enumerated variables of this step, its previous steps or "
            "the model outside.",
        )
    ordinals = {record.variables[v] for v in markov}
    if len(ordinals) > 1:
        listed = {v: sorted(record.variables[v]) for v in markov}
        raise SiteError(
            None,
            f"scan '{record.name}': the enumerated variables carried from step to step "
            f"({listed}) are in different plates; plait-enum contracts one chain per plate "
            "element, so they must share their plates.",
        )
    kept = next(iter(ordinals), frozenset())
    contracted = {p: pl for p, pl in record.plates.items() if p not in kept}
    coords = [(v, j) for v in sorted(markov) for j in range(markov[v])]
    cur = ["_PREV_" * j + v for v, j in coords]
    prev = ["_PREV_" * (j + 1) + v for v, j in coords]
    keep = frozenset(cur) | frozenset(prev) | frozenset(a for a in names if a in outer)
    variables: dict[str, frozenset[str]] = {}
    for v, o in record.variables.items():
        variables[v] = o - kept
    for a in keep:
        variables[a] = (outer.get(a, frozenset()) | record.variables.get(a, frozenset())) - kept
    local_factors = [Factor(f.array, f.axes, f.ordinal - kept) for f in factors]
    local = contract(local_factors, variables, contracted, keep, semiring)
    chain.local = local if local.steps else None
    chain.coords = coords
    chain.sizes = [_size(factors, "_PREV_" * j + v, record) for v, j in coords]
    prev_only = set(prev) - set(cur)
    trans_parts, emit_parts = [], []
    for f in local.factors:
        if any(a in prev_only for a in f.axes):
            trans_parts.append(f)
        elif any(a in cur for a in f.axes):
            emit_parts.append(f)
        else:
            chain.factors.append(_over_time(f, time, record.steps, kept))
    if not coords:
        if trans_parts or emit_parts:
            raise PlaitError(f"scan '{record.name}': internal error, a state factor without state")
        return chain
    trans = _state_matrix(total(trans_parts) if trans_parts else None, coords, chain.sizes, time)
    emit = _state_vector(
        total(emit_parts) if emit_parts else None, cur, chain.sizes, time, record.steps
    )
    chain.transition, chain.emission = trans, emit
    chain.factors.append(_contract_chain(trans, emit, prev, chain.sizes, record, semiring, kept))
    return chain


def _size(factors: list[Factor], name: str, record: ScanRecord) -> int:
    for f in factors:
        if name in f.axes:
            return f.sizes[name]
    raise PlaitError(f"scan '{record.name}': no factor depends on '{name}'")


def _over_time(f: Factor, time: str, steps: int, kept: frozenset[str]) -> Factor:
    if time in f.axes:
        k = f.axes.index(time)
        return Factor(jnp.sum(f.array, axis=k), f.axes[:k] + f.axes[k + 1 :], kept)
    return Factor(f.array * steps, f.axes, kept)


def _batch_axes(f: Factor, exclude: set[str], time: str) -> tuple[str, ...]:
    return tuple(a for a in f.axes if a not in exclude and a != time)


def _state_matrix(
    f: Factor | None, coords: list[tuple[str, int]], sizes: list[int], time: str
) -> Factor:
    """Factors over (previous state, state) as ``(..., [time,] S, S)``; ``-inf`` where the
    lags the two states share disagree."""
    prev = ["_PREV_" * (j + 1) + v for v, j in coords]
    fresh = ["_PREV_" * j + v for v, j in coords if j == 0]
    dtype = jnp.float32 if f is None else f.array.dtype
    if f is None:
        f = Factor(jnp.zeros((), dtype), ())
    batch = _batch_axes(f, set(prev) | set(fresh), time)
    lead = (*batch, time) if time in f.axes else batch
    base = align(f.array, f.axes, (*lead, *prev, *fresh))
    n = len(coords)
    lead_shape = base.shape[: len(lead)]
    shape = lead_shape + tuple(sizes) + tuple(sizes)
    out = jnp.zeros(shape, base.dtype)
    # Place the factor: previous coords on the first block, lag-0 coords on the second.
    expand = list(base.shape[: len(lead) + n])
    fresh_pos = {v: k for k, (v, j) in enumerate(coords) if j == 0}
    second = [
        base.shape[len(lead) + n + list(fresh_pos).index(v)] if j == 0 else 1 for v, j in coords
    ]
    out = out + jnp.reshape(base, tuple(expand) + tuple(second))
    # Lags shared by both states must agree: cur (v, j) == prev (v, j - 1 + 1).
    for k, (v, j) in enumerate(coords):
        if j == 0:
            continue
        p = coords.index((v, j - 1))
        ip = jnp.arange(sizes[p]).reshape((-1,) + (1,) * (2 * n - 1 - p))
        ic = jnp.arange(sizes[k]).reshape((-1,) + (1,) * (n - 1 - k))
        out = jnp.where(ip == ic, out, -jnp.inf)
    size = 1
    for s_ in sizes:
        size *= s_
    out = jnp.reshape(out, (*lead_shape, size, size))
    return Factor(out, (*lead, _S_PREV, _S_CUR), f.ordinal)


def _state_vector(
    f: Factor | None, cur: list[str], sizes: list[int], time: str, steps: int
) -> Factor:
    if f is None:
        f = Factor(jnp.zeros((), jnp.float32), ())
    batch = _batch_axes(f, set(cur), time)
    target = (*batch, time, *cur)
    base = align(f.array, f.axes, target)
    lead_shape = base.shape[: len(batch)]
    base = jnp.broadcast_to(base, (*lead_shape, steps, *sizes))
    size = 1
    for s_ in sizes:
        size *= s_
    return Factor(jnp.reshape(base, (*lead_shape, steps, size)), (*batch, time, _S_CUR), f.ordinal)


def _contract_chain(
    trans: Factor,
    emit: Factor,
    prev: list[str],
    sizes: list[int],
    record: ScanRecord,
    semiring: str,
    kept: frozenset[str],
) -> Factor:
    """``log Σ_{s_1..s_T} exp(Σ_t A_t(s_{t-1}, s_t) + b_t(s_t))``, a factor over ``s_0``.

    Sum-product with a shared transition on the sequential strategy: plait-enum's rescaled
    backward recursion (`shared_backward`). Otherwise ``plait.kernels`` runs the forward
    algorithm on the reversed chain: ``x'_k = s_{T-k}``, ``init' = b_T``, step ``k`` with
    transition ``A_{T-k}^T`` and emission ``b_{T-k-1}`` (0 for the last); its total plus its
    final message is the factor over ``x'_T = s_0``.
    """
    time = record.time
    batch = tuple(
        dict.fromkeys(a for a in (*trans.axes, *emit.axes) if a not in (time, _S_PREV, _S_CUR))
    )
    dtype = jnp.result_type(trans.array.dtype, emit.array.dtype)
    a = align(trans.array, trans.axes, (*batch, time, _S_PREV, _S_CUR)).astype(dtype)
    b = align(emit.array, emit.axes, (*batch, time, _S_CUR)).astype(dtype)
    strategy = record.strategy
    if strategy == "auto":
        strategy = auto_strategy(record.steps, a.shape[-1])
    if semiring == "log" and strategy == "sequential" and a.shape[-3] == 1:
        beta = shared_backward(a[..., 0, :, :], b)
    else:
        a_rev = jnp.swapaxes(a[..., ::-1, :, :] if a.shape[-3] > 1 else a, -1, -2)
        init = b[..., -1, :]
        zero = jnp.zeros_like(b[..., :1, :])
        b_rev = jnp.concatenate([b[..., :-1, :][..., ::-1, :], zero], axis=-2)
        kernel = chain_logsumexp if semiring == "log" else chain_max
        result = kernel(init, FactoredSteps(a_rev, b_rev), strategy=strategy)  # type: ignore[arg-type]
        beta = result.log_normalizer[..., None] + result.log_final
    beta = jnp.reshape(beta, beta.shape[:-1] + tuple(sizes))
    return Factor(beta, (*batch, *prev), kept)
