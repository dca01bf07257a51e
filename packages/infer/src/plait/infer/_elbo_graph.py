"""``TraceGraph_ELBO``: score-function gradients for guide sites without a
reparameterised sampler, each with only the costs that depend on it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array, lax, random

from plait import Message, PlateFrame
from plait.handlers import replay, seed, substitute, trace
from plait.infer._elbo import ELBO, Loss, MapFn
from plait.infer._elbo_checks import check_model_guide_match, validate_model
from plait.infer._log_probs import importance_traces
from plait.infer._provenance import eval_provenance

__all__ = ["MultiFrameTensor", "TraceGraph_ELBO", "get_nonreparam_deps"]


class MultiFrameTensor(dict[frozenset[PlateFrame], Array]):
    """Sums of arrays that live in different plates, keyed by their plate frames
    (NumPyro's ``MultiFrameTensor``).

    Example:
        >>> import jax.numpy as jnp
        >>> from plait import PlateFrame
        >>> data = PlateFrame("data", -1, 3)
        >>> costs = MultiFrameTensor(([data], jnp.ones(3)), ([], jnp.asarray(2.0)))
        >>> float(costs.sum_to([]))  # the plate is summed: 3 + 2
        5.0
        >>> costs.sum_to([data]).shape  # kept: 1 + 2 per element
        (3,)
    """

    def __init__(self, *items: tuple[Sequence[PlateFrame], Array]) -> None:
        super().__init__()
        self.add(*items)

    def add(self, *items: tuple[Sequence[PlateFrame], Array]) -> None:
        """Add ``(cond_indep_stack, array)`` pairs."""
        for stack, value in items:
            frames = frozenset(stack)
            self[frames] = self[frames] + value if frames in self else value

    def sum_to(self, target_frames: Sequence[PlateFrame]) -> Array:
        """The total, summed over every plate not in ``target_frames``."""
        total: Array | None = None
        for frames, value in self.items():
            for f in frames:
                if f not in target_frames and jnp.shape(value)[f.dim] != 1:
                    value = jnp.sum(value, f.dim, keepdims=True)
            while jnp.shape(value) and jnp.shape(value)[0] == 1:
                value = jnp.squeeze(value, 0)
            total = value if total is None else total + value
        return jnp.array(0.0) if total is None else total


def _substitute_nonreparam(data: Mapping[str, Any], msg: Message) -> Any:
    """The value ``data`` gives a site without a reparameterised sampler, made to carry
    the site's own draw's dependencies (shape, dtype) but not its value's."""
    name = msg.name
    if msg.type != "sample" or name is None or name not in data:
        return None
    if getattr(msg.fn, "has_rsample", True):
        return None
    value = msg.fn(*msg.args, **msg.kwargs)
    return 0 * value + data[name]


def _log_probs(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
) -> tuple[dict[str, Array], dict[str, Array]]:
    _, _, model_lp, guide_lp = importance_traces(model, guide, args, kwargs, params)
    return model_lp, guide_lp


def _latents(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
) -> dict[str, Array]:
    guide_run = seed(substitute(guide, data=params) if params else guide, 0)
    model_run = seed(substitute(model, data=params) if params else model, 0)
    guide_trace = trace(guide_run).get_trace(*args, **kwargs)
    model_trace = dict(trace(replay(model_run, trace=guide_trace)).get_trace(*args, **kwargs))
    model_trace.update(guide_trace)
    return {
        name: site.value
        for name, site in model_trace.items()
        if site.type == "sample" and not site.is_observed
    }


def get_nonreparam_deps(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    param_map: Mapping[str, Any],
    latents: Mapping[str, Any] | None = None,
) -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
    """For each sample site of the model and of the guide, the guide sites without a
    reparameterised sampler that its log density depends on (through provenance)."""
    if latents is None:
        latents = jax.eval_shape(lambda: _latents(model, guide, args, kwargs, param_map))

    def fn(**values: Any) -> tuple[dict[str, Array], dict[str, Array]]:
        def subs(msg: Message) -> Any:
            return _substitute_nonreparam(values, msg)

        subs_model = substitute(seed(model, 0), substitute_fn=subs)
        subs_guide = substitute(seed(guide, 0), substitute_fn=subs)
        return _log_probs(subs_model, subs_guide, args, kwargs, param_map)

    model_deps, guide_deps = eval_provenance(fn, **latents)
    return model_deps, guide_deps


class TraceGraph_ELBO(ELBO):
    """The ELBO with score-function (REINFORCE) gradients for guide sites that have no
    reparameterised sampler (NumPyro's ``TraceGraph_ELBO``, Schulman et al. 2015).

    Each such site ``z`` gets the surrogate ``log q(z) * stop_gradient(cost)``, where the
    cost sums only the model and guide log densities that depend on ``z`` (found by
    provenance tracking through the traced computation), summed over the plates ``z`` is
    not in; reparameterised sites keep their pathwise gradient. As in NumPyro, no
    baseline is subtracted. The loss value is the plain ELBO.

    Args:
        num_particles: the number of particles averaged.
        vectorize_particles: map the particles with ``jax.vmap`` (``True``),
            ``jax.lax.map`` (``False``) or your own ``(fn, keys)`` callable.

    Example:
        >>> import jax
        >>> import numpyro.distributions as dist
        >>> from plait import param, sample
        >>> from plait.infer import TraceGraph_ELBO
        >>> model = lambda: sample("c", dist.Bernoulli(0.5))
        >>> guide = lambda: sample("c", dist.Bernoulli(param("p", 0.5)))
        >>> abs(float(TraceGraph_ELBO().loss(jax.random.key(0), {"p": 0.5}, model, guide)))
        0.0
    """

    can_infer_discrete = True

    def __init__(self, num_particles: int = 1, vectorize_particles: bool | MapFn = True) -> None:
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
            model_trace, guide_trace, model_lp, guide_lp = importance_traces(
                seed(model, model_seed),
                seed(guide, guide_seed),
                args,
                kwargs,
                param_map,
                check_covered=True,
            )
            check_model_guide_match(model_trace, guide_trace)
            validate_model(model_trace, strict=True)
            latents = {
                name: site.value
                for name, site in guide_trace.items()
                if site.type == "sample" and not site.is_observed
            }
            model_deps, guide_deps = get_nonreparam_deps(
                model, guide, args, kwargs, param_map, latents=latents
            )
            elbo = jnp.array(0.0)
            downstream: defaultdict[str, MultiFrameTensor] = defaultdict(MultiFrameTensor)
            for name, site in model_trace.items():
                if site.type == "sample":
                    elbo = elbo + jnp.sum(model_lp[name])
                    for dep in model_deps[name]:
                        downstream[dep].add((site.cond_indep_stack, model_lp[name]))
            for name, site in guide_trace.items():
                if site.type == "sample":
                    total = jnp.sum(guide_lp[name])
                    if not getattr(site.fn, "has_rsample", True):
                        total = lax.stop_gradient(total)
                    elbo = elbo - total
                    for dep in guide_deps[name]:
                        downstream[dep].add((site.cond_indep_stack, -guide_lp[name]))
            for node, cost in downstream.items():
                site = guide_trace[node]
                summed = cost.sum_to(site.cond_indep_stack)
                surrogate = jnp.sum(guide_lp[node] * lax.stop_gradient(summed))
                elbo = elbo + surrogate - lax.stop_gradient(surrogate)
            return elbo, None

        return self._particles(rng_key, single)["loss"]
