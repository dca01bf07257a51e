"""``TraceEnum_ELBO``: the ELBO with enumerated discrete sites summed out exactly, in the
model (plait-enum's contraction, through the ``plait_log_density`` hook) and in the guide
(each guide-enumerated value weighted by its guide probability)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array, random

from plait import Message, Trace, hooks
from plait.errors import PlaitError
from plait.handlers import replay, seed, substitute, trace
from plait.infer._elbo import ELBO, Loss, MapFn
from plait.infer._elbo_checks import check_reparameterised, guide_covers
from plait.infer._log_density import log_density
from plait.infer._log_probs import trace_log_probs

__all__ = ["TraceEnum_ELBO"]


NO_ENUM_PLUGIN = (
    "TraceEnum_ELBO enumerates guide sites marked infer={'enumerate': 'parallel'} through "
    "the plait_enumerate hook, and no installed plugin answers it. Install plait-enum: "
    "pip install plait-enum."
)


def _enumerated(tr: Trace) -> list[str]:
    return [
        n
        for n, s in tr.items()
        if s.type == "sample" and not s.is_observed and s.infer.get("enumerate") == "parallel"
    ]


def _unscaled_log_prob(site: Message) -> Array:
    """The guide's log probability of an enumerated value, without masks or scales (the
    measure the costs are weighted by, as NumPyro's ``log_measure``)."""
    fn = site.fn
    batch_shape = tuple(fn.batch_shape)
    while type(fn).__name__ in ("MaskedDistribution", "ExpandedDistribution"):
        fn = fn.base_dist
    return fn.expand(batch_shape).log_prob(site.value)  # type: ignore[no-any-return]


def _enum_dim(site: Message) -> int:
    """The batch dim ``enum`` put an enumerated site's support on (its leftmost)."""
    event = len(site.fn.event_shape)
    return -(jnp.ndim(site.value) - event)


def _max_plate_nesting(model_trace: Trace, guide_trace: Trace) -> int:
    """The largest batch rank of a site's log density (NumPyro's guess)."""
    ranks = [0]
    for tr in (model_trace, guide_trace):
        for site in tr.values():
            if site.type == "sample":
                ranks.append(len(site.fn.batch_shape))
                ranks.extend(-f.dim for f in site.cond_indep_stack)
    return max(ranks)


class TraceEnum_ELBO(ELBO):
    """The ELBO with enumerated discrete sites summed out exactly (NumPyro's
    ``TraceEnum_ELBO``).

    Model sites marked ``infer={"enumerate": "parallel"}`` that the guide does not draw
    are summed out by :func:`plait.infer.log_density`, that is by plait-enum's
    contraction (tensor variable elimination, and the time-parallel contraction of an
    enumerated ``scan``): with an empty guide the loss is exactly ``-log p(x)``. Guide
    sites so marked are enumerated too (``plait.enum.enum``): every cost is weighted by
    the guide probability of the enumerated values it depends on, so their expectation
    is exact. With both, the model's enumerated sites are summed out first for every
    joint value of the guide's (plate element by plate element where the guide's sites
    are inside plates), as NumPyro does; other guide sites must be reparameterisable.

    Args:
        num_particles: the number of particles averaged.
        max_plate_nesting: the number of plate dims; guessed (and remembered) from the
            first traces when not given, as NumPyro does.
        vectorize_particles: map the particles with ``jax.vmap`` (``True``),
            ``jax.lax.map`` (``False``) or your own ``(fn, keys)`` callable.

    Raises:
        SiteError: a model site enumerated outside a plate meets a guide site enumerated
            inside it (their sum does not factor over the plate).

    Example:
        >>> import jax
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import TraceEnum_ELBO
        >>> model = lambda: sample("x", dist.Normal(0.0, 1.0), obs=0.0)
        >>> round(float(TraceEnum_ELBO().loss(jax.random.key(0), {}, model, lambda: None)), 4)
        0.9189
    """

    can_infer_discrete = True

    def __init__(
        self,
        num_particles: int = 1,
        max_plate_nesting: int | float = float("inf"),
        vectorize_particles: bool | MapFn = True,
    ) -> None:
        self.max_plate_nesting = max_plate_nesting
        super().__init__(num_particles=num_particles, vectorize_particles=vectorize_particles)

    def loss(
        self,
        rng_key: Array,
        param_map: Mapping[str, Any],
        model: Callable[..., Any],
        guide: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Loss:
        def single(key: Array) -> tuple[Loss, None]:
            model_seed, guide_seed = random.split(key)
            return self._particle(
                model_seed, guide_seed, param_map, model, guide, args, kwargs
            ), None

        return self._particles(rng_key, single)["loss"]

    def _particle(
        self,
        model_seed: Array,
        guide_seed: Array,
        params: Mapping[str, Any],
        model: Callable[..., Any],
        guide: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> Array:
        guide_run = (
            substitute(seed(guide, guide_seed), data=params) if params else seed(guide, guide_seed)
        )
        guide_trace = trace(guide_run).get_trace(*args, **kwargs)
        enumerated = _enumerated(guide_trace)
        check_reparameterised(
            {n: s for n, s in guide_trace.items() if n not in enumerated}, "TraceEnum_ELBO"
        )
        if not enumerated:
            guide_lp = sum(trace_log_probs(guide_trace).values(), start=jnp.array(0.0))
            replayed = guide_covers(
                replay(seed(model, model_seed), trace=guide_trace), guide_trace=guide_trace
            )
            model_lp, _ = log_density(replayed, args, kwargs, params)
            return model_lp - guide_lp
        if self.max_plate_nesting == float("inf"):
            plain = replay(seed(model, model_seed), trace=guide_trace)
            probe = substitute(plain, data=params) if params else plain
            model_trace = trace(probe).get_trace(*args, **kwargs)
            self.max_plate_nesting = _max_plate_nesting(model_trace, guide_trace)
        first = -int(self.max_plate_nesting) - 1
        enumerating = hooks.enumerate_sites(guide_run, first_available_dim=first)
        if enumerating is None:
            raise PlaitError(NO_ENUM_PLUGIN)
        enum_trace = trace(enumerating).get_trace(*args, **kwargs)
        replayed = guide_covers(
            replay(seed(model, model_seed), trace=enum_trace), guide_trace=enum_trace
        )
        model_run = substitute(replayed, data=params) if params else replayed
        model_trace = trace(model_run).get_trace(*args, **kwargs)
        model_enumerated = [n for n in _enumerated(model_trace) if n not in enum_trace]
        if not model_enumerated:
            return _weighted_costs(model_trace, enum_trace, enumerated)
        if any(enum_trace[n].cond_indep_stack for n in enumerated):
            return _local_enumeration(enum_trace, enumerated, model_run, params, args, kwargs)
        return _global_assignments(
            enum_trace, guide_trace, enumerated, guide_run, model, model_seed, params, args, kwargs
        )


def _weighted_costs(model_trace: Trace, guide_trace: Trace, enumerated: list[str]) -> Array:
    """The ELBO when only the guide enumerates: every model and guide log density, each
    weighted by the guide probability of the enumerated values it varies with."""
    model_costs = [*trace_log_probs(model_trace, sum_log_prob=False).values()]
    return _expectation(model_costs, guide_trace, enumerated)


def _local_enumeration(
    enum_trace: Trace,
    enumerated: list[str],
    model_run: Callable[..., Any],
    params: Mapping[str, Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> Array:
    """The ELBO when the guide enumerates sites inside plates and the model enumerates
    sites of its own (NumPyro's contraction of each group of model factors, then the
    expectation under the guide): the model's log joint comes back as log-factors of the
    guide's enumerated values (plait-enum sums the model's own enumerated sites out, left
    of the guide's dims, keeping the plates the guide's values live in), and each factor
    is weighted by the guide probability of the values it varies with, plate element by
    plate element."""
    given = {name: _enum_dim(enum_trace[name]) for name in enumerated}
    answer = hooks.log_factors(
        model_run, args, kwargs, params, first_available_dim=min(given.values()) - 1, given=given
    )
    if answer is None:
        raise PlaitError(NO_ENUM_PLUGIN)
    model_costs, _ = answer
    return _expectation(model_costs, enum_trace, enumerated)


def _expectation(model_costs: list[Array], guide_trace: Trace, enumerated: list[str]) -> Array:
    """The expectation under the guide's enumerated sites of the model's log-factors
    minus the guide's log densities: each cost weighted by the guide probability of the
    enumerated values it varies with (and of those they depend on in the guide)."""
    dims = {name: _enum_dim(guide_trace[name]) for name in enumerated}
    measures = {name: _unscaled_log_prob(guide_trace[name]) for name in enumerated}
    by_dim = {dim: name for name, dim in dims.items()}

    def varies_with(array: Array) -> set[str]:
        shape = jnp.shape(array)
        return {by_dim[d] for d in range(-len(shape), 0) if d in by_dim and shape[d] > 1}

    def closure(names: set[str]) -> set[str]:
        pending = list(names)
        while pending:
            for more in varies_with(measures[pending.pop()]) - names:
                names.add(more)
                pending.append(more)
        return names

    costs = list(model_costs)
    costs += [-lp for lp in trace_log_probs(guide_trace, sum_log_prob=False).values()]
    elbo = jnp.array(0.0)
    for cost in costs:
        deps = closure(varies_with(cost))
        if deps:
            weight = jnp.exp(sum(measures[name] for name in sorted(deps)))
            cost = cost * weight
        elbo = elbo + jnp.sum(cost)
    return elbo


def _slice(site: Message, indices: Mapping[int, int], shape: tuple[int, ...]) -> Array:
    """The value of a guide site of the enumerated trace at one joint value of the
    enumerated sites (``indices``: enum dim to index), in the site's own shape."""
    value = site.value
    event = len(site.fn.event_shape)
    for dim, index in sorted(indices.items()):
        axis = jnp.ndim(value) - event + dim
        if axis >= 0:
            size = jnp.shape(value)[axis]
            value = jnp.take(value, index if size > 1 else 0, axis=axis)
    return jnp.reshape(value, shape)


def _global_assignments(
    enum_trace: Trace,
    plain_trace: Trace,
    enumerated: list[str],
    guide_run: Callable[..., Any],
    model: Callable[..., Any],
    model_seed: Array,
    params: Mapping[str, Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> Array:
    """The ELBO when the guide enumerates global sites and the model enumerates too: for
    each joint value of the guide's enumerated sites, the model's log density with its
    own enumerated sites summed out (plait-enum), weighted by the guide's probability.
    The guide's other sites take their values in the enumerated guide trace (the same
    draws as NumPyro's)."""
    dims = {name: _enum_dim(enum_trace[name]) for name in enumerated}
    sizes = [int(jnp.shape(enum_trace[name].value)[0]) for name in enumerated]
    grid = list(itertools.product(*(range(k) for k in sizes)))
    drawn = [n for n, s in enum_trace.items() if s.type == "sample" and not s.is_observed]
    choices = {
        name: jnp.stack(
            [
                _slice(
                    enum_trace[name],
                    {dims[e]: g[i] for i, e in enumerate(enumerated)},
                    tuple(jnp.shape(plain_trace[name].value)),
                )
                for g in grid
            ]
        )
        for name in drawn
    }

    def one(values: Mapping[str, Array]) -> Array:
        guide_trace = trace(substitute(guide_run, data=values)).get_trace(*args, **kwargs)
        log_q = trace_log_probs(guide_trace)
        weight = sum(jnp.sum(_unscaled_log_prob(guide_trace[n])) for n in enumerated)
        replayed = guide_covers(
            replay(seed(model, model_seed), trace=guide_trace), guide_trace=guide_trace
        )
        model_lp, _ = log_density(replayed, args, kwargs, params)
        return jnp.exp(weight) * (model_lp - sum(log_q.values(), start=jnp.array(0.0)))

    return jnp.sum(jax.vmap(one)(choices))
