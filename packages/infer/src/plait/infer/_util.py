"""From a model to what a sampler needs: latents, potential, valid initial values.

``initialize_model`` traces the model once with an init strategy (the *prototype*), reads
its continuous latents and their ``biject_to(support)`` transforms, its params and its
enumerated sites, builds the potential energy on the unconstrained space and searches for
a finite initial point (up to 100 tries, each with a fresh key).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax, random
from jax.flatten_util import ravel_pytree
from numpyro.distributions import constraints

from plait import Message, Messenger, Trace
from plait.errors import PlaitError, SiteError
from plait.handlers import seed, substitute, trace
from plait.infer._init import InitStrategy, init_to_uniform
from plait.infer._log_density import (
    is_real_support,
    log_density,
    potential_energy,
    site_log_prob,
    site_transform,
    unconstrained,
)

__all__ = [
    "MAX_INIT_TRIES",
    "ModelInfo",
    "make_postprocess",
    "make_potential",
    "raise_invalid_init",
    "ModelSpec",
    "ParamInfo",
    "find_valid_initial_params",
    "inspect_model",
    "prototype_trace",
]

MAX_INIT_TRIES = 100


class ParamInfo(NamedTuple):
    """A starting point: unconstrained latents ``z``, the potential there and its gradient."""

    z: dict[str, Array]
    potential_energy: Array
    z_grad: dict[str, Array]


class ModelInfo(NamedTuple):
    """What :func:`initialize_model` returns (NumPyro's fields)."""

    param_info: ParamInfo
    potential_fn: Callable[..., Any]
    postprocess_fn: Callable[..., Any]
    model_trace: Trace


@dataclass(frozen=True)
class ModelSpec:
    """The latent structure of a model, read from its prototype trace.

    Fields:
        names: the continuous latent sample sites, in trace order.
        params: values of the ``param`` and ``mutable`` sites (held fixed).
        enumerated: discrete latent sites that are summed out by enumeration.
        deterministic: the deterministic sites.
        shapes: the shape of each continuous latent on the unconstrained space.

    It holds no traced value: it may be read from an abstract trace.
    """

    names: tuple[str, ...]
    params: dict[str, Any]
    enumerated: tuple[str, ...] = ()
    deterministic: tuple[str, ...] = ()
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


class _default_prng_key(Messenger[..., Any]):
    """Give ``prng_key()`` calls a fixed key inside a potential (NumPyro does the same)."""

    def process_prng_key(self, msg: Message) -> None:
        if msg.value is None and msg.kwargs.get("rng_key") is None:
            msg.value = random.key(0)


def prototype_trace(
    rng_key: Array,
    model: Callable[..., Any],
    init_strategy: InitStrategy,
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
) -> Trace:
    """The trace of ``model`` with its latents drawn by ``init_strategy``."""
    init_model = substitute(seed(model, rng_key), substitute_fn=init_strategy)
    return trace(init_model).get_trace(*model_args, **model_kwargs)


def _is_delta(fn: Any) -> bool:
    while fn is not None:
        if type(fn).__name__ == "Delta":
            return True
        fn = getattr(fn, "base_dist", None)
    return False


def inspect_model(tr: Trace, *, algorithm: str = "this algorithm") -> ModelSpec:
    """The :class:`ModelSpec` of a prototype trace; errors for latents it cannot handle.

    Raises:
        SiteError: a discrete latent that is not marked for enumeration or cannot be
            enumerated, a latent ``Delta`` site, or a support with no bijection.
    """
    names: list[str] = []
    params: dict[str, Any] = {}
    enumerated: list[str] = []
    deterministic: list[str] = []
    shapes: dict[str, tuple[int, ...]] = {}
    for name, site in tr.items():
        if site.type == "sample" and site.is_observed:
            continue
        if site.type == "sample":
            support = getattr(site.fn, "support", None)
            if support is not None and support.is_discrete:
                _check_enumerable(name, site, algorithm)
                enumerated.append(name)
            elif _is_delta(site.fn):
                raise SiteError(
                    name,
                    f"latent site '{name}' has a Delta distribution; {algorithm} cannot sample "
                    f"it. Record the value with plait.deterministic('{name}', value) instead.",
                )
            else:
                names.append(name)
                shapes[name] = tuple(jnp.shape(site_transform(site).inv(site.value)))
        elif site.type in ("param", "mutable"):
            params[name] = site.value
        elif site.type == "deterministic":
            deterministic.append(name)
    return ModelSpec(tuple(names), params, tuple(enumerated), tuple(deterministic), shapes)


def _check_enumerable(name: str, site: Message, algorithm: str) -> None:
    kind = type(site.fn).__name__
    if not getattr(site.fn, "has_enumerate_support", False):
        raise SiteError(
            name,
            f"site '{name}' is a discrete latent ({kind}) that cannot be enumerated (its "
            f"support is not finite), and {algorithm} samples continuous latents only. "
            "Marginalise it by hand (plait.factor with its summed-out log density), "
            "observe it, or replace it with a continuous relaxation.",
        )
    if site.infer.get("enumerate") != "parallel":
        raise SiteError(
            name,
            f"site '{name}' is a discrete latent ({kind}) and {algorithm} samples continuous "
            "latents only. Sum it out by enumeration: sample(..., infer={'enumerate': "
            "'parallel'}) or plait.enum.config_enumerate(model) (needs plait-enum).",
        )


def make_potential(
    model: Callable[..., Any], spec: ModelSpec
) -> Callable[[Mapping[str, Any], tuple[Any, ...], Mapping[str, Any]], Array]:
    """``potential(z, args, kwargs)``: minus the log density at unconstrained ``z``."""
    prepared = _default_prng_key(substitute(model, data=spec.params) if spec.params else model)

    def potential(z: Mapping[str, Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Array:
        return potential_energy(prepared, args, kwargs, z)

    return potential


def make_postprocess(
    model: Callable[..., Any], spec: ModelSpec, prototype: Trace | None = None
) -> Callable[[Mapping[str, Any], tuple[Any, ...], Mapping[str, Any]], dict[str, Array]]:
    """``postprocess(z, args, kwargs)``: constrained latents and deterministic sites.

    With enumerated sites, the model runs under the log-density hook (plait-enum), so
    each enumerated site holds its support along an enumeration dim and a deterministic
    site that depends on one carries that dim, as NumPyro's ``get_samples`` gives it.
    Draw enumerated sites from their posterior with ``Predictive(...,
    infer_discrete=True)``.

    Given the model's ``prototype`` trace, a model whose latents are all plain sample
    sites whose supports are numpyro's fixed constraints (no deterministic, enumerated,
    param or control-flow site, no support with bounds of its own, which might come from
    a latent or the data) is not run again: each latent is mapped by its
    ``biject_to(support)``, the transform a replay would apply, to the same values.
    """
    transforms = _fixed_transforms(spec, prototype) if prototype is not None else None
    if transforms is not None:
        found = transforms

        def constrain(
            z: Mapping[str, Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
        ) -> dict[str, Array]:
            return {
                name: z[name] if found[name] is None else found[name](z[name])
                for name in spec.names
            }

        return constrain

    prepared = _default_prng_key(substitute(model, data=spec.params) if spec.params else model)
    keep = spec.names + spec.deterministic

    def postprocess(
        z: Mapping[str, Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> dict[str, Array]:
        replayed = unconstrained(prepared, params=z, log_det=False)
        if spec.enumerated:
            _, tr = log_density(replayed, args, kwargs, {})
        else:
            tr = trace(seed(replayed, 0)).get_trace(*args, **kwargs)
        return {name: tr[name].value for name in keep if name in tr}

    return postprocess


def _is_fixed_constraint(support: Any) -> bool:
    """Whether ``support`` is one of ``numpyro.distributions.constraints``' own instances
    (``positive``, ``simplex``, ...), or a product of one: a support with bounds of its
    own (``interval(low, high)``) may take them from a latent or the data."""
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return any(support is value for value in vars(constraints).values())


def _fixed_transforms(spec: ModelSpec, prototype: Trace) -> dict[str, Any] | None:
    """Each latent's ``biject_to(support)`` (``None`` for a real support, which
    :class:`~plait.infer._log_density.unconstrained` passes as is) when constraining
    needs no replay of the model (see :func:`make_postprocess`); else ``None``."""
    if spec.enumerated or spec.deterministic or spec.params:
        return None
    if any(site.type not in ("sample", "plate") for site in prototype.values()):
        return None
    transforms: dict[str, Any] = {}
    for name in spec.names:
        site = prototype.get(name)
        if site is None or site.type != "sample":
            return None
        support = site.fn.support
        if not _is_fixed_constraint(support):
            return None
        transforms[name] = None if is_real_support(support) else site_transform(site)
    return transforms


def _uniform_radius(init_strategy: InitStrategy) -> float | None:
    """The radius of an ``init_to_uniform`` strategy (``None`` for other strategies)."""
    if init_strategy is init_to_uniform:
        return 2.0
    if isinstance(init_strategy, functools.partial) and init_strategy.func is init_to_uniform:
        return float(init_strategy.keywords.get("radius", 2.0))
    return None


def find_valid_initial_params(
    rng_key: Array,
    model: Callable[..., Any],
    spec: ModelSpec,
    *,
    init_strategy: InitStrategy = init_to_uniform,
    model_args: tuple[Any, ...] = (),
    model_kwargs: Mapping[str, Any] | None = None,
    validate_grad: bool = True,
    forward_mode_differentiation: bool = False,
    potential_fn: Callable[[Mapping[str, Any]], Array] | None = None,
    max_tries: int = MAX_INIT_TRIES,
) -> tuple[ParamInfo, Array]:
    """An unconstrained starting point with a finite potential (and gradient).

    Tries ``init_strategy`` with fresh keys, up to :data:`MAX_INIT_TRIES` times, inside a
    ``lax.while_loop`` (so it works under ``jit`` and ``vmap``). ``init_to_uniform``
    draws on the unconstrained shapes of ``spec`` directly (as NumPyro does), so the loop
    evaluates the potential only and never runs the model under the strategy. Returns
    the last point tried and whether it is valid. ``potential_fn(z)`` (default: built
    from the model) lets a sampler share its potential, so the model is traced once.
    With ``max_tries=1`` there is no loop: one attempt, which compiles in about half the
    time (a sampler retries from Python only when it fails).
    """
    kwargs = {} if model_kwargs is None else dict(model_kwargs)
    if potential_fn is None:
        built = make_potential(model, spec)

        def potential_fn(position: Mapping[str, Any]) -> Array:
            return built(position, model_args, kwargs)

    fn = potential_fn
    init_model = substitute(model, data=spec.params) if spec.params else model
    radius = _uniform_radius(init_strategy)

    def draw(key: Array) -> dict[str, Array]:
        if radius is not None:
            keys = random.split(key, max(len(spec.names), 1))
            return {
                name: random.uniform(k, spec.shapes[name], minval=-radius, maxval=radius)
                for name, k in zip(spec.names, keys, strict=False)
            }
        tr = prototype_trace(key, init_model, init_strategy, model_args, kwargs)
        return {name: site_transform(tr[name]).inv(tr[name].value) for name in spec.names}

    real = jnp.result_type(float)

    def attempt(key: Array) -> tuple[ParamInfo, Array]:
        z = {k: jnp.asarray(v, real) for k, v in draw(key).items()}
        if validate_grad:
            if forward_mode_differentiation:
                pe = fn(z)
                grad = jax.jacfwd(fn)(z)
            else:
                pe, grad = jax.value_and_grad(fn)(z)
            flat, _ = ravel_pytree(grad)
            ok = jnp.isfinite(pe) & jnp.all(jnp.isfinite(flat))
        else:
            pe = fn(z)
            grad = jax.tree_util.tree_map(jnp.zeros_like, z)
            ok = jnp.isfinite(pe)
        grad = jax.tree_util.tree_map(lambda g: g.astype(real), grad)
        return ParamInfo(z, jnp.asarray(pe, real), grad), ok

    if max_tries == 1:
        return attempt(random.split(rng_key)[1])

    def body(state: tuple[Array, Array, ParamInfo, Array]) -> tuple[Any, ...]:
        i, key, _, _ = state
        key, sub = random.split(key)
        info, ok = attempt(sub)
        return i + 1, key, info, ok

    def cond(state: tuple[Array, Array, ParamInfo, Array]) -> Array:
        return (state[0] < max_tries) & ~state[3]

    # The carry is built from the known shapes, not by tracing `attempt` once more.
    zeros = {name: jnp.zeros(spec.shapes[name], real) for name in spec.names}
    blank = ParamInfo(zeros, jnp.zeros((), real), dict(zeros))
    start = (jnp.asarray(0), rng_key, blank, jnp.asarray(False))
    _, _, info, ok = lax.while_loop(cond, body, start)
    return info, ok


def raise_invalid_init(
    model: Callable[..., Any],
    spec: ModelSpec,
    info: ParamInfo,
    valid: Any,
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
) -> None:
    """Raise a clear error naming the sites with a non-finite log density, if any chain
    found no valid start."""
    valid = np.asarray(valid)
    if valid.all():
        return
    chain = int(np.argmin(valid.reshape(-1)))
    z = jax.tree_util.tree_map(
        lambda v: jnp.reshape(v, (-1, *v.shape[valid.ndim :]))[chain], info.z
    )
    pe = float(np.asarray(info.potential_energy).reshape(-1)[chain])
    prepared = seed(substitute(model, data=spec.params) if spec.params else model, 0)
    with warnings.catch_warnings():
        # numpyro warns about out-of-support values; the error below names the site.
        warnings.simplefilter("ignore")
        tr = trace(unconstrained(prepared, params=z)).get_trace(*model_args, **model_kwargs)
        bad = [
            name
            for name, site in tr.items()
            if site.type == "sample"
            and not site.infer.get("enumerate")
            and not bool(jnp.all(jnp.isfinite(site_log_prob(tr, name, site))))
        ]
    where = (
        "non-finite log density at " + ", ".join(f"site '{b}'" for b in bad)
        if bad
        else "a non-finite gradient"
    )
    message = (
        f"could not find a valid initial point in {MAX_INIT_TRIES} tries: the potential "
        f"energy is {pe} at the last try, with {where}. Check that the observations lie in "
        "the supports of their distributions and that the parameters are valid, or start "
        "elsewhere with init_strategy=init_to_value(values={...})."
    )
    if len(bad) == 1:
        raise SiteError(bad[0], message)
    raise PlaitError(message)


def _as_key(rng_key: Any) -> Array:
    if isinstance(rng_key, int | np.integer):
        return random.key(int(rng_key))
    return rng_key  # type: ignore[no-any-return]


def _is_batched_key(rng_key: Array) -> bool:
    if jnp.issubdtype(rng_key.dtype, jax.dtypes.prng_key):
        return rng_key.ndim > 0
    return rng_key.ndim > 1
