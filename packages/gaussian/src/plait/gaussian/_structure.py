"""Which sites of a traced step form a linear-Gaussian chain, decided from its jaxpr.

Sources: the placeholders of the latent Gaussian sites (*candidates*) and the parts of
the carry that depend on them (the *latent carry*). A candidate is

- a *leaf* when nothing but deterministic sites and other leaves reads its value (an
  unobserved ``y`` of a prior predictive, the missing half of ``obs_mask``): its density
  integrates to one, so it is left out of the log density and drawn last;
- else a *chain* site, which must be affine in the sources (exactly: the degree walk of
  `plait.gaussian._linearity`), with a noise that does not depend on them.

Observed Gaussian sites whose mean depends on the sources are the *emissions*; any other
site that reads a source breaks the chain. A candidate the chain cannot take is dropped
(it stays sampled) and the step is traced again without it; one marked
``infer={"collapse": True}`` is an error instead, naming the operation at fault. A chain
coefficient that depends on an enumerated site would need a switching linear system,
which is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plait.errors import SiteError
from plait.gaussian._deps import dependencies
from plait.gaussian._held import HeldSite
from plait.gaussian._linearity import _Broken, _walk
from plait.gaussian._provenance import copies
from plait.gaussian._step import SiteInfo, TracedStep

__all__ = ["ChainPlan", "Drop", "classify"]


@dataclass
class Drop:
    """Candidates the chain cannot take: trace again without them."""

    names: frozenset[str]


@dataclass
class ChainPlan:
    """The chain found in one traced step (static: positions and names, no arrays).

    Attributes:
        traced: the traced step.
        chain: the chain sites, in order; ``chain_inputs[i]`` is the step input holding
            the placeholder of ``chain[i]``.
        latent_carry: the carry leaves that depend on the chain (Kalman state).
        emissions: the observed Gaussian sites whose mean depends on the chain.
        leaves: the candidates nothing reads (left out of the log density).
        hidden: deterministic sites whose value depends on the chain or the leaves.
        initial: the held initial sites, by carry leaf.
        varying: per step output, whether it changes from step to step.
        carry_copies: per latent carry leaf, the ids of the source elements each of its
            elements copies (``-1``: computed), ids numbering the latent carry's elements
            and then the chain sites' (see `source_sizes`).
        needs: per emission, the chain sites and latent carry leaves its mean reads.
        scale: the chain's one log-density scale (None: 1).
        strategy: the Kalman strategy.
        deps: per step output, the bit mask of the step inputs it depends on.
        emission_shapes: per emission, its observation's shape broadcast with its own.
    """

    traced: TracedStep
    chain: list[SiteInfo]
    chain_inputs: list[int]
    latent_carry: list[int]
    emissions: list[SiteInfo]
    leaves: list[SiteInfo]
    hidden: list[str]
    initial: dict[int, HeldSite]
    varying: list[bool]
    carry_copies: list[np.ndarray]
    needs: list[tuple[list[int], list[int]]]
    scale: Any
    strategy: str
    deps: list[int]
    emission_shapes: dict[str, tuple[int, ...]]
    source_sizes: list[int] = field(default_factory=list)

    @property
    def collapsed_names(self) -> list[str]:
        return [s.name for s in self.chain] + [s.name for s in self.leaves]


def _bits(positions: Any) -> int:
    out = 0
    for p in positions:
        out |= 1 << p
    return out


def _site_mask(deps: list[int], site: SiteInfo, n_carry: int, keys: tuple[str, ...]) -> int:
    out = 0
    for key in keys:
        for i in site.outputs.get(key, ()):
            out |= deps[n_carry + i]
    return out


_ALL = ("loc", "root", "mask", "value", "scale", "fn")
_NOISE = ("root", "mask", "value", "scale")


def _fail(site: SiteInfo, scan: str, reason: str) -> SiteError:
    return SiteError(
        site.name,
        f"site '{site.name}' of scan '{scan}' asks to be collapsed (infer={{'collapse': "
        f"True}}) but is not linear-Gaussian: {reason}. Remove the option to keep it sampled.",
    )


def classify(
    traced: TracedStep, scan: str, held: dict[int, HeldSite], init_leaves: list[Any]
) -> ChainPlan | Drop | None:
    """Find the chain of ``traced`` (see the module docstring).

    Args:
        traced: the traced step.
        scan: the scan's name, for messages.
        held: the held initial sites by ``id`` of their placeholder value.
        init_leaves: the leaves of the scan's initial carry.

    Returns:
        The plan; `Drop` to trace again without some candidates; None when the step has
        no candidate at all.

    Raises:
        SiteError: a site marked ``infer={"collapse": True}`` cannot be collapsed, or the
            chain would need a switching linear system.
    """
    n_c = traced.n_carry
    inputs = traced.inputs
    ph_pos = list(inputs["placeholders"])
    n_in = ph_pos[-1] + 1 if ph_pos else inputs["key"].stop
    deps = dependencies(traced.closed, [1 << i for i in range(n_in)])
    samples = [s for s in traced.sites if s.type == "sample"]
    for site in samples:
        asks = site.infer.get("collapse") is True and not site.observed
        if asks and site.placeholder is None and site.gaussian is None:
            raise SiteError(
                site.name,
                f"site '{site.name}' of scan '{scan}' asks to be collapsed (infer="
                f"{{'collapse': True}}) but its distribution is a {type(site.fn).__name__}: "
                "only Normal and MultivariateNormal latent sites can be integrated out.",
            )
    candidates = [
        s for s in samples
        if s.placeholder is not None and not traced.placeholders[s.placeholder].enumerated
    ]  # fmt: skip
    if not candidates:
        return None
    enum_bits = _bits(
        ph_pos[s.placeholder]
        for s in samples
        if s.placeholder is not None and traced.placeholders[s.placeholder].enumerated
    )
    bit = {id(s): 1 << ph_pos[s.placeholder] for s in candidates}  # type: ignore[index]

    # Leaves: candidates whose value only deterministic sites and other leaves read.
    leaf_ids = {id(s) for s in candidates}
    carry_out = 0
    for j in range(n_c):
        carry_out |= deps[j]
    changed = True
    while changed:
        changed = False
        consumers = carry_out
        for s in samples:
            if id(s) not in leaf_ids:
                consumers |= _site_mask(deps, s, n_c, _ALL)
        for s in candidates:
            if id(s) in leaf_ids and consumers & bit[id(s)]:
                leaf_ids.discard(id(s))
                changed = True
    leaves = [s for s in candidates if id(s) in leaf_ids]
    chain = [s for s in candidates if id(s) not in leaf_ids]
    chain_bits = _bits(ph_pos[s.placeholder] for s in chain)  # type: ignore[index]

    # The latent carry: the carry leaves that depend on the chain, directly or not.
    latent: set[int] = set()
    while True:
        grown = {j for j in range(n_c) if deps[j] & (chain_bits | _bits(latent))}
        if grown == latent:
            break
        latent = grown
    carry_bits = _bits(latent)
    sources = chain_bits | carry_bits
    # Which chain sites feed each latent carry leaf (to drop the right ones).
    feeds: dict[int, int] = {j: deps[j] & chain_bits for j in latent}
    for _ in range(n_c + 1):
        for j in latent:
            for i in latent:
                if deps[j] & (1 << i):
                    feeds[j] |= feeds[i]

    def culprits(mask: int) -> int:
        out = mask & chain_bits
        for j in latent:
            if mask & (1 << j):
                out |= feeds[j]
        return out

    degrees = _walk(traced.closed, [1 if sources & (1 << i) else 0 for i in range(n_in)])

    def degree(site: SiteInfo, key: str) -> Any:
        worst: Any = 0
        for i in site.outputs.get(key, ()):
            d = degrees[n_c + i]
            if isinstance(d, _Broken):
                return d
            worst = max(worst, d)
        return worst

    drop = 0
    problems: list[tuple[int, str]] = []  # (culprit bits, reason)
    for j in sorted(latent):
        d = degrees[j]
        if isinstance(d, _Broken):
            problems.append((culprits(deps[j]), f"the carry is not affine in it ({d.detail})"))
    emissions: list[SiteInfo] = []
    for s in chain:
        if s.masked:
            problems.append((bit[id(s)], "it is masked"))
        loc = degree(s, "loc")
        if isinstance(loc, _Broken):
            problems.append(
                (culprits(_site_mask(deps, s, n_c, ("loc",))) | bit[id(s)],
                 f"its mean is not affine in the previous latent ({loc.detail})")
            )  # fmt: skip
        noise = _site_mask(deps, s, n_c, _NOISE) & sources
        if noise:
            problems.append((culprits(noise) | bit[id(s)], "its scale depends on the latent"))
    for s in samples:
        if id(s) in bit:
            continue
        mask = _site_mask(deps, s, n_c, _ALL)
        if not mask & sources:
            continue
        if s.observed and s.gaussian is not None:
            loc = degree(s, "loc")
            noise = _site_mask(deps, s, n_c, _NOISE) & sources
            if isinstance(loc, _Broken):
                problems.append(
                    (culprits(mask), f"the mean of the observed site '{s.name}' is not affine in "
                     f"it ({loc.detail})")
                )  # fmt: skip
            elif noise:
                problems.append(
                    (culprits(noise), f"the scale of the observed site '{s.name}' depends on it")
                )
            else:
                emissions.append(s)
        else:
            kind = "observed" if s.observed else "latent"
            problems.append(
                (culprits(mask), f"the {kind} {type(s.fn).__name__} site '{s.name}' depends on it")
            )
    if problems:
        for culprit, reason in problems:
            drop |= culprit
            for s in chain:
                if culprit & bit[id(s)] and s.infer.get("collapse") is True:
                    raise _fail(s, scan, reason)
        return Drop(frozenset(s.name for s in chain if drop & bit[id(s)]))

    # A chain coefficient that depends on an enumerated site: a switching system.
    tainted: set[int] = set()
    while True:
        grown = {
            j for j in range(n_c) if j not in latent and deps[j] & (enum_bits | _bits(tainted))
        }
        if grown == tainted:
            break
        tainted = grown
    switching = enum_bits | _bits(tainted)
    if switching:
        coefficients: list[tuple[SiteInfo | None, int]] = [
            (s, _site_mask(deps, s, n_c, _ALL)) for s in (*chain, *emissions)
        ]
        coefficients += [(None, deps[j]) for j in latent]
        for by, mask in coefficients:
            if mask & switching:
                what = f"site '{by.name}'" if by is not None else "the carry"
                names = [
                    traced.placeholders[k].name
                    for k, p in enumerate(ph_pos)
                    if traced.placeholders[k].enumerated and mask & (1 << p)
                ] or ["an enumerated site (through the carry)"]
                raise SiteError(
                    by.name if by is not None else None,
                    f"scan '{scan}': {what} depends on the enumerated site "
                    f"'{names[0]}', so integrating its Gaussian chain out would need a switching "
                    "linear system, which plait.gaussian does not do. Keep the Gaussian latents "
                    "sampled (infer={'collapse': False}) or the discrete ones observed.",
                )

    scales = {s.scale for s in (*chain, *emissions)}
    initial: dict[int, HeldSite] = {}
    for j in sorted(latent):
        start = held.get(id(init_leaves[j]))
        if start is not None and init_leaves[j] is start.value:
            initial[j] = start
            scales.add(start.scale)
    scales = {1.0 if s is None else s for s in scales}
    if "array" in scales or len(scales) > 1:
        found = ", ".join(f"'{s.name}': {s.scale}" for s in (*chain, *emissions))
        raise SiteError(
            chain[0].name if chain else None,
            f"scan '{scan}': the sites of one collapsed chain must share one scale (a number, "
            f"as a plate's subsampling gives), found {found}. Scale the whole scan from "
            "outside with plait.handlers.scale instead.",
        )
    scale = next(iter(scales)) if scales else 1.0

    hidden_bits = sources | _bits(ph_pos[s.placeholder] for s in leaves)  # type: ignore[index]
    hidden = [
        s.name
        for s in traced.sites
        if s.type == "deterministic" and _site_mask(deps, s, n_c, ("value",)) & hidden_bits
    ]

    tv = _bits(inputs["x"]) | _bits(inputs["index"]) | _bits(inputs["key"])
    tv |= _bits(j for j in range(n_c) if j not in latent)
    varying = [bool(d & tv) for d in deps]

    latent_list = sorted(latent)
    chain_inputs = [ph_pos[s.placeholder] for s in chain]  # type: ignore[index]
    in_ids: list[np.ndarray | None] = [None] * n_in
    offset = 0
    sizes: list[int] = []
    for j in latent_list:
        shape = traced.closed.in_avals[j].shape  # type: ignore[attr-defined]
        size = int(np.prod(shape))
        in_ids[j] = offset + np.arange(size).reshape(shape)
        offset += size
        sizes.append(size)
    for p in chain_inputs:
        shape = traced.closed.in_avals[p].shape  # type: ignore[attr-defined]
        size = int(np.prod(shape))
        in_ids[p] = offset + np.arange(size).reshape(shape)
        offset += size
        sizes.append(size)
    all_copies = copies(traced.closed, in_ids)
    carry_copies = [all_copies[j] for j in latent_list]

    needs: list[tuple[list[int], list[int]]] = []
    for s in emissions:
        mask = _site_mask(deps, s, n_c, ("loc",))
        needs.append(
            (
                [i for i, p in enumerate(chain_inputs) if mask & (1 << p)],
                [k for k, j in enumerate(latent_list) if mask & (1 << j)],
            )
        )
    out_avals = traced.closed.out_avals
    emission_shapes = {
        s.name: tuple(
            np.broadcast_shapes(
                tuple(out_avals[n_c + s.outputs["value"][0]].shape),  # type: ignore[attr-defined]
                s.shape,
            )
        )
        for s in emissions
    }
    strategies = sorted(
        {str(s.infer["contraction"]) for s in (*chain, *emissions) if "contraction" in s.infer}
    )
    if len(strategies) > 1:
        raise SiteError(
            chain[0].name if chain else None,
            f"scan '{scan}': the sites of one collapsed chain ask for different contraction "
            f"strategies ({', '.join(repr(s) for s in strategies)}); give them one.",
        )
    strategy = strategies[0] if strategies else "auto"
    return ChainPlan(
        traced=traced,
        chain=chain,
        chain_inputs=chain_inputs,
        latent_carry=latent_list,
        emissions=emissions,
        leaves=leaves,
        hidden=hidden,
        initial=initial,
        varying=varying,
        carry_copies=carry_copies,
        needs=needs,
        scale=scale,
        strategy=strategy,
        deps=deps,
        emission_shapes=emission_shapes,
        source_sizes=sizes,
    )
