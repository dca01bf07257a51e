"""``get_model_relations``: a model's graph as data (NumPyro's format, plus time plates).

The model runs once under ``seed(0)`` to find its sites, plates and scans. Then each site's
log density (a deterministic site's value) is traced as a function of every site's value
(:func:`plait.viz._provenance.eval_provenance`), which says on which sites it depends. A
scan's stacked sites are then split by time: one step of its body is run on labelled
inputs (``_steps.py``), which tells a dependency within a step from one on an earlier step
through the carry (``x_{t-1} -> x_t``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from plait import Message
from plait.control_flow.plugin_api import ACCUMULATED, BranchDistribution
from plait.handlers import seed, substitute, trace
from plait.viz._provenance import eval_provenance
from plait.viz._steps import (
    RecordedScan,
    record_scans,
    site_outputs,
    step_dependencies,
    substitute_deterministic,
)

__all__ = ["get_model_relations"]

_WRAPPERS = ("Independent", "ExpandedDistribution", "MaskedDistribution")


def _dist_name(site: Message) -> str:
    if site.type == "deterministic":
        return "Deterministic"
    loop = site.stash.get(ACCUMULATED)
    if loop is not None:
        return loop.distribution
    return _fn_name(site.fn)


def _fn_name(fn: Any) -> str:
    if isinstance(fn, BranchDistribution):
        names = dict.fromkeys(_fn_name(b) for b in fn.branches if b is not None)
        return " | ".join(names)
    while type(fn).__name__ in _WRAPPERS and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return type(fn).__name__


def _resolve_plate_samples(plate_samples: dict[str, set[str]]) -> dict[str, set[str]]:
    # NumPyro's rule: plates that overlap without nesting are split into clones.
    for pv in plate_samples.values():
        for q, qv in plate_samples.items():
            if pv & qv and pv - qv and qv - pv:
                resolved = dict(plate_samples)
                resolved[q] = pv & qv
                resolved[q + "__CLONE"] = qv - pv
                return _resolve_plate_samples(resolved)
    return plate_samples


def _time_plate_name(name: str, taken: set[str]) -> str:
    candidate, k = name, 2
    while candidate in taken:
        candidate, k = f"{name}_{k}", k + 1
    taken.add(candidate)
    return candidate


def get_model_relations(
    model: Callable[..., Any],
    model_args: tuple[Any, ...] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The relations of a model's sites and plates, as NumPyro's ``get_model_relations``
    gives them, ``scan`` bodies and other control flow included.

    The keys NumPyro has, in its format:

    - ``"sample_sample"``: each sample (and deterministic) site to the sites it depends on
      (within the same step, for a site of a ``scan`` body);
    - ``"sample_param"``: each sample site to the params it depends on;
    - ``"sample_dist"``: each site to its distribution's name (``"Deterministic"`` for
      deterministic sites; ``"Normal | Laplace"`` for a ``cond`` site whose branches
      differ);
    - ``"param_constraint"``: each param to its constraint's name;
    - ``"plate_sample"``: each plate to its sites (a ``scan`` body is a plate over time,
      named after the body function);
    - ``"observed"``: the observed sites.

    And plait's:

    - ``"carried"``: each site of a ``scan`` body to the body sites of *earlier* steps it
      depends on through the carry (``{"x": ["x"]}``: ``x_t`` depends on ``x_{t-1}``);
    - ``"time_plates"``: each plate that is a loop over time, to its length (``None`` for a
      ``while_loop``, whose length is not known before it runs);
    - ``"enumerated"``: the sites marked for enumeration (``infer={"enumerate":
      "parallel"}``, e.g. by ``config_enumerate``), summed out by plait-enum;
    - ``"collapsed"``: the sites marked ``infer={"collapse": True}`` (integrated out by
      plait-gaussian).

    Args:
        model: the model.
        model_args: its positional arguments.
        model_kwargs: its keyword arguments.

    Returns:
        The relations, a dict as above.

    Example:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import plate, sample
        >>> from plait.viz import get_model_relations
        >>> def model(data):
        ...     m = sample("m", dist.Normal(0, 1))
        ...     sd = sample("sd", dist.LogNormal(m, 1))
        ...     with plate("N", len(data)):
        ...         sample("obs", dist.Normal(m, sd), obs=data)
        >>> relations = get_model_relations(model, (jnp.ones(10),))
        >>> relations["sample_sample"], relations["plate_sample"], relations["observed"]
        ({'m': [], 'sd': ['m'], 'obs': ['m', 'sd']}, {'N': ['obs']}, ['obs'])
    """
    args = tuple(model_args or ())
    kwargs = dict(model_kwargs or {})
    recorder = record_scans()
    with trace() as tr, seed(rng_seed=0), recorder:
        model(*args, **kwargs)
    sites = {n: s for n, s in tr.items() if s.type in ("sample", "deterministic")}
    params = {n: s for n, s in tr.items() if s.type == "param"}
    # A loop of unknown length sends its sites once, with no per-iteration values: they
    # keep their observations.
    values = {n: s.value for n, s in sites.items() if ACCUMULATED not in s.stash}
    values |= {n: s.value for n, s in params.items()}

    def outputs(**inputs: Any) -> dict[str, Any]:
        data = dict(inputs)
        with (
            trace() as run,
            seed(rng_seed=0),
            substitute(data=data),
            substitute_deterministic(data),
        ):
            model(*args, **kwargs)
        return site_outputs(run)

    provenance = eval_provenance(outputs, **values)
    depends = {n: _leaves_union(p) for n, p in provenance.items()}

    scan_of: dict[str, RecordedScan] = {}
    for scan in recorder.scans:
        for name in scan.sites:
            if name in sites:
                scan_of.setdefault(name, scan)
    steps = {id(scan): step_dependencies(scan, values) for scan in recorder.scans}

    sample_sample: dict[str, list[str]] = {}
    carried: dict[str, list[str]] = {}
    for name in sites:
        found = set(depends.get(name, ())) - {name}
        owner = scan_of.get(name)
        if owner is not None:
            body = set(owner.sites)
            step = steps[id(owner)]
            found = (found - body) | set(step.same_step.get(name, ()))
            carried[name] = [s for s in sites if s in step.previous.get(name, ())]
        sample_sample[name] = [s for s in sites if s in found]
    sample_param = {name: [p for p in params if p in depends.get(name, ())] for name in sites}
    param_constraint = {
        name: str(site.kwargs["constraint"]) if "constraint" in site.kwargs else ""
        for name, site in params.items()
    }

    plate_sets: dict[str, set[str]] = {}
    for name, site in tr.items():
        if site.type == "plate":
            plate_sets.setdefault(name, set())
    for name, site in sites.items():
        for frame in site.cond_indep_stack:
            plate_sets.setdefault(frame.name, set()).add(name)
    time_plates: dict[str, int | None] = {}
    taken = set(plate_sets)
    for scan in recorder.scans:
        plate = _time_plate_name(scan.call.name, taken)
        time_plates[plate] = scan.call.length
        plate_sets[plate] = {n for n in scan.sites if n in sites}
    loops: dict[str, str] = {}
    for name, site in sites.items():
        loop = site.stash.get(ACCUMULATED)
        if loop is not None:
            if loop.loop not in loops:
                loops[loop.loop] = _time_plate_name(loop.loop, taken)
                time_plates[loops[loop.loop]] = None
            plate_sets.setdefault(loops[loop.loop], set()).add(name)
    resolved = _resolve_plate_samples(plate_sets)
    plate_sample = {k: [n for n in tr if n in v] for k, v in resolved.items()}
    for clone in resolved:
        base = clone.split("__CLONE")[0]
        if clone != base and base in time_plates:
            time_plates[clone] = time_plates[base]

    observed = [n for n, s in sites.items() if s.type == "sample" and s.is_observed]
    enumerated = [
        n
        for n, s in sites.items()
        if s.type == "sample" and not s.is_observed and s.infer.get("enumerate") == "parallel"
    ]
    collapsed = [
        n for n, s in sites.items() if s.type == "sample" and dict(s.infer).get("collapse") is True
    ]
    return {
        "sample_sample": sample_sample,
        "sample_param": sample_param,
        "sample_dist": {n: _dist_name(s) for n, s in sites.items()},
        "param_constraint": param_constraint,
        "plate_sample": plate_sample,
        "observed": observed,
        "carried": carried,
        "time_plates": time_plates,
        "enumerated": enumerated,
        "collapsed": collapsed,
    }


def _leaves_union(prov: Any) -> frozenset[str]:
    if isinstance(prov, frozenset):
        return prov
    out: set[str] = set()
    stack = [prov]
    while stack:
        item = stack.pop()
        if isinstance(item, frozenset):
            out |= item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return frozenset(out)
