"""The prototype run of a model that an autoguide is built from.

``find_prototype`` does for an autoguide what NumPyro's ``initialize_model`` does for it,
with the same keys: trace the model with the init strategy (the prototype trace), read
each latent's ``biject_to(support)``, and find a starting point with a finite potential
energy and gradient in up to 100 tries (``init_to_uniform`` and ``init_to_value`` draw
it without running the model again, as NumPyro's do). Each try is one compiled program
(the potential and its gradient), not a run operation by operation; under ``jit`` the
tries after the first run in a ``lax.while_loop``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array, lax, random
from jax.flatten_util import ravel_pytree
from numpyro.distributions import constraints
from numpyro.distributions.transforms import Transform

from plait import Message, Messenger, Trace
from plait.errors import PlaitError, SiteError
from plait.handlers import seed, substitute, trace
from plait.infer._args import CONCRETE_VALUE_ERRORS, merge_args, split_args
from plait.infer._init import InitStrategy, init_to_uniform, init_to_value
from plait.infer._log_density import potential_energy, site_transform

__all__ = ["MAX_TRIES", "Prototype", "find_prototype", "is_latent"]

MAX_TRIES = 100


def is_latent(site: Message) -> bool:
    """A latent sample site the autoguides fit: continuous, not observed."""
    return site.type == "sample" and not site.is_observed and not site.fn.support.is_discrete


class _default_key(Messenger[..., Any]):
    """A fixed key for ``prng_key()`` inside the potential (NumPyro's
    ``_substitute_default_key``)."""

    def process_prng_key(self, msg: Message) -> None:
        if msg.value is None:
            msg.value = random.key(0)


@dataclass
class Prototype:
    """What an autoguide reads off its model's prototype run.

    Fields:
        trace: the prototype trace (latents drawn by the init strategy).
        init_locs: a valid starting point, unconstrained, by latent site (trace order).
        transforms: ``biject_to(support)`` of each latent and ``biject_to(constraint)``
            of each param.
        potential_model: the model with its params and mutables fixed at their
            prototype values (the model NumPyro's potential function runs).
    """

    trace: Trace
    init_locs: dict[str, Array]
    transforms: dict[str, Transform]
    potential_model: Callable[..., Any]

    def potential_fn(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Callable[..., Any]:
        """Minus the model's log density at unconstrained latents, for these arguments."""
        return functools.partial(potential_energy, self.potential_model, args, kwargs)


def _strategy(init_loc_fn: InitStrategy) -> tuple[Any, dict[str, Any]]:
    """``(function, keywords)`` of an init strategy, as a ``functools.partial``."""
    if isinstance(init_loc_fn, functools.partial):
        return init_loc_fn.func, dict(init_loc_fn.keywords)
    return init_loc_fn, {}


def _refuse_sphere(name: str, site: Message) -> None:
    support = site.fn.support
    base = support.base_constraint if isinstance(support, constraints.independent) else support
    if "sphere" in repr(base).lower():
        raise SiteError(
            name,
            f"Continuous inference cannot handle spherical sample site '{name}'. Consider "
            "using ProjectedNormal distribution together with a reparameterizer, e.g. "
            f"plait.handlers.reparam(config={{'{name}': ProjectedNormalReparam()}}) with "
            "plait.infer.reparam.ProjectedNormalReparam.",
        )


def _latent_transform(name: str, site: Message) -> Transform:
    _refuse_sphere(name, site)
    return site_transform(site)


def _transforms(tr: Trace) -> dict[str, Transform]:
    transforms: dict[str, Transform] = {}
    for name, site in tr.items():
        if is_latent(site):
            transforms[name] = _latent_transform(name, site)
        elif site.type == "param":
            constraint = site.kwargs.get("constraint") or constraints.real
            transforms[name] = site_transform(site, constraint)
    return transforms


def _check_latents(tr: Trace, guide: str) -> None:
    for name, site in tr.items():
        if site.type != "sample" or site.is_observed:
            continue
        if site.fn.support.is_discrete:
            if site.infer.get("enumerate") == "parallel":
                continue
            raise SiteError(
                name,
                f"Continuous inference cannot handle discrete sample site '{name}' "
                f"({type(site.fn).__name__}): {guide} fits continuous latents only. Mark it "
                "for enumeration (infer={'enumerate': 'parallel'}) and use TraceEnum_ELBO, "
                f"hide it from the guide (block(model, hide=['{name}'])), or write the guide "
                "by hand.",
            )
        base = site.fn
        while base is not None and type(base).__name__ != "Delta":
            base = getattr(base, "base_dist", None)
        if base is not None:
            raise SiteError(
                name,
                f"Sample site '{name}' has a delta distribution; use "
                f"plait.deterministic('{name}', value) to add this value to the trace instead.",
            )


def _replays_needed(tr: Trace) -> bool:
    """NumPyro's ``replay_model``: deterministic sites or a support that depends on
    other values (then ``init_to_value`` runs the model again)."""
    for site in tr.values():
        if site.type == "deterministic":
            return True
        if is_latent(site):
            support = site.fn.support
            bounds: tuple[str, ...] = ()
            if isinstance(support, constraints._GreaterThan):
                bounds = ("lower_bound",)
            elif isinstance(support, constraints._Interval):
                bounds = ("lower_bound", "upper_bound")
            if any(not isinstance(getattr(support, b), int | float) for b in bounds):
                return True
    return False


def _concrete_bool(x: Any) -> bool | None:
    """``bool(x)``, or ``None`` for a traced value."""
    try:
        return bool(x)
    except jax.errors.ConcretizationTypeError:
        return None


Try = Callable[
    [tuple[Any, Array, dict[str, Array], Array], tuple[Any, ...], Mapping[str, Any]],
    tuple[Any, ...],
]


def _compiled_try(
    body: Try, args: tuple[Any, ...], kwargs: Mapping[str, Any], state: Any
) -> tuple[tuple[Any, ...], Callable[[Any], tuple[Any, ...]]]:
    """The first try, and the function that makes the next ones: one compiled program
    a try (the potential and its gradient, rather than operation by operation); eager
    when the model reads concrete values of its arguments."""
    dynamic, static = split_args(args, kwargs)
    compiled = jax.jit(lambda s, d: body(s, *merge_args(d, static)))
    try:
        return compiled(state, dynamic), lambda s: compiled(s, dynamic)
    except CONCRETE_VALUE_ERRORS:
        return body(state, args, kwargs), lambda s: body(s, args, kwargs)


def find_prototype(
    rng_key: Array,
    model: Callable[..., Any],
    init_loc_fn: InitStrategy,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    guide: str,
) -> Prototype:
    """The prototype of ``model`` for the autoguide named ``guide`` (see the module).

    Raises:
        SiteError: a discrete latent not marked for enumeration, a latent ``Delta``, or a
            support with no bijection to the real line.
        PlaitError: no starting point with a finite potential in 100 tries.
    """

    def guarded(msg: Message) -> Any:
        if is_latent(msg):
            _refuse_sphere(str(msg.name), msg)
        return init_loc_fn(msg)

    init_model = substitute(seed(model, rng_key), substitute_fn=guarded)
    tr = trace(init_model).get_trace(*args, **kwargs)
    _check_latents(tr, guide)
    transforms = _transforms(tr)
    fixed = {n: s.value for n, s in tr.items() if s.type in ("param", "mutable")}
    potential_model = _default_key(substitute(model, data=fixed) if fixed else model)
    names = [n for n, s in tr.items() if is_latent(s)]
    prototype = {n: transforms[n].inv(tr[n].value) for n in names}
    plates = {n: s.value for n, s in tr.items() if s.type == "plate"}
    search_model = substitute(potential_model, data=plates) if plates else potential_model
    func, options = _strategy(init_loc_fn)
    radius: float | None = None
    given: dict[str, Any] = {}
    if func is init_to_uniform:
        radius = options.get("radius", 2.0)
    elif func is init_to_value and not _replays_needed(tr):
        radius = 2.0
        values = options.get("values") or {}
        given = {k: transforms[k].inv(v) for k, v in values.items() if k in transforms}

    def body(
        state: tuple[Any, Array, dict[str, Array], Array],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> tuple[Any, ...]:
        # NumPyro's find_valid_initial_params, key for key.
        i, key, _, _ = state
        key, sub = random.split(key)
        params: dict[str, Array] = {}
        if radius is None:
            run = substitute(seed(search_model, sub), substitute_fn=init_loc_fn)
            draw = trace(run).get_trace(*args, **kwargs)
            params = {n: site_transform(draw[n]).inv(draw[n].value) for n in names}
        else:
            for name, value in prototype.items():
                if name in given:
                    params[name] = jnp.asarray(given[name])
                else:
                    params[name] = random.uniform(
                        sub, jnp.shape(value), minval=-radius, maxval=radius
                    )
                    key, sub = random.split(key)
        pe, grad = jax.value_and_grad(lambda z: potential_energy(search_model, args, kwargs, z))(
            params
        )
        valid = jnp.isfinite(pe) & jnp.all(jnp.isfinite(ravel_pytree(grad)[0]))
        return i + 1, key, params, valid

    state, again = _compiled_try(body, args, kwargs, (0, rng_key, prototype, jnp.asarray(False)))
    if _concrete_bool(state[3]) is None:  # under jit: the other tries in a while loop
        state = lax.while_loop(
            lambda s: (s[0] < MAX_TRIES) & ~s[3], lambda s: body(s, args, kwargs), state
        )
    else:
        while not _concrete_bool(state[3]) and state[0] < MAX_TRIES:
            state = again(state)
        if not _concrete_bool(state[3]):
            raise PlaitError(
                f"{guide} could not find valid initial parameters for the model in "
                f"{MAX_TRIES} tries (the log density or its gradient is not finite at every "
                "point tried). Check that the observations lie in the supports of their "
                "distributions, or start elsewhere with init_loc_fn=init_to_value(values=...)."
            )
    init_locs = {n: state[2][n] for n in names}  # trace order (a compiled try sorts keys)
    return Prototype(tr, init_locs, transforms, potential_model)
