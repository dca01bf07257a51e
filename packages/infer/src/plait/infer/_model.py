"""A model read once for a sampler: its structure, potential and post-processing.

:func:`prepare_model` traces the model with the init strategy (in Python, with the
concrete arguments), warns and errs as NumPyro's ``initialize_model`` does, marks
unmarked discrete latents for enumeration (NumPyro enumerates them with a
``FutureWarning``), and returns the functions a sampler compiles. Those functions take
the model's arguments explicitly and read nothing traced from the prototype trace except
the values of ``param`` sites, which the cache key covers.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from plait import Message, Trace
from plait.errors import SiteError
from plait.handlers import infer_config
from plait.infer._args import CONCRETE_VALUE_ERRORS
from plait.infer._init import InitStrategy, init_to_uniform
from plait.infer._util import (
    ModelInfo,
    ModelSpec,
    ParamInfo,
    _as_key,
    _is_batched_key,
    find_valid_initial_params,
    inspect_model,
    make_postprocess,
    make_potential,
    prototype_trace,
    raise_invalid_init,
)

__all__ = [
    "EnumerationSiteError",
    "PreparedModel",
    "auto_enumerate",
    "checked_init_params",
    "initialize_model",
    "prepare_model",
    "shared_potential",
]


class EnumerationSiteError(SiteError, RuntimeError):
    """A discrete latent a sampler cannot enumerate (NumPyro raises ``RuntimeError``)."""


@dataclass(frozen=True)
class PreparedModel:
    """A model ready for a sampler.

    Fields:
        model: the model, unmarked discrete latents marked for enumeration.
        spec: its latent structure (:class:`~plait.infer._util.ModelSpec`).
        potential: ``potential(z, args, kwargs)``: minus the log density at
            unconstrained ``z``.
        postprocess: ``postprocess(z, args, kwargs)``: constrained latents and
            deterministic sites (with the enumerated support as extra dims where they
            depend on enumerated sites, as NumPyro gives them).
        cache_key: what compiled functions built from these capture (the structure and
            the values of ``param`` sites).
        prototype: the trace the structure was read from.
    """

    model: Callable[..., Any]
    spec: ModelSpec
    potential: Callable[[Mapping[str, Any], tuple[Any, ...], Mapping[str, Any]], Array]
    postprocess: Callable[[Mapping[str, Any], tuple[Any, ...], Mapping[str, Any]], dict[str, Array]]
    cache_key: Hashable
    prototype: Trace


def _unmarked_discrete(tr: Trace) -> list[str]:
    names = []
    for name, site in tr.items():
        if site.type != "sample" or site.is_observed:
            continue
        support = getattr(site.fn, "support", None)
        if support is None or not support.is_discrete:
            continue
        if site.infer.get("enumerate") is None and getattr(site.fn, "has_enumerate_support", False):
            names.append(name)
    return names


def auto_enumerate(
    model: Callable[..., Any], tr: Trace, *, stacklevel: int = 3
) -> Callable[..., Any]:
    """``model`` with its unmarked enumerable discrete latents marked
    ``infer={"enumerate": "parallel"}``, warning as NumPyro does (``FutureWarning``)."""
    names = _unmarked_discrete(tr)
    if not names:
        return model
    for name in names:
        warnings.warn(
            f"Some algorithms will automatically enumerate the discrete latent site {name} "
            "of your model. In the future, enumerated sites need to be marked with "
            "`infer={'enumerate': 'parallel'}`.",
            FutureWarning,
            stacklevel=stacklevel,
        )
    marked = frozenset(names)

    def config(msg: Message) -> dict[str, Any]:
        return {"enumerate": "parallel"} if msg.name in marked and not msg.is_observed else {}

    return infer_config(model, config_fn=config)


def _digest(values: Mapping[str, Any]) -> str:
    """A content hash of ``values`` (param sites), so a cache never reuses stale ones."""
    h = hashlib.sha1(usedforsecurity=False)
    leaves, treedef = jax.tree_util.tree_flatten(dict(values))
    h.update(repr(treedef).encode())
    for leaf in leaves:
        arr = np.asarray(leaf)
        h.update(f"{arr.dtype}{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _read_model(
    rng_key: Any,
    model: Callable[..., Any],
    init_strategy: InitStrategy,
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    algorithm: str,
) -> tuple[Callable[..., Any], ModelSpec, Trace]:
    tr = prototype_trace(rng_key, model, init_strategy, model_args, model_kwargs)
    model = auto_enumerate(model, tr, stacklevel=6)
    for name, site in tr.items():
        if site.type != "sample" or site.is_observed:
            continue
        support = getattr(site.fn, "support", None)
        if support is None or not support.is_discrete:
            continue
        kind = type(site.fn).__name__
        mark = site.infer.get("enumerate")
        if mark is not None and mark != "parallel":
            raise EnumerationSiteError(
                name,
                f"{algorithm} enumerates discrete latents in parallel only, but site '{name}' "
                f"is marked infer={{'enumerate': {mark!r}}}. Mark it 'parallel'.",
            )
        if not getattr(site.fn, "has_enumerate_support", False):
            raise EnumerationSiteError(
                name,
                f"site '{name}' is a discrete latent ({kind}) that cannot be enumerated (its "
                f"support is not finite), and {algorithm} samples continuous latents only. "
                "Marginalise it by hand (plait.factor with its summed-out log density), "
                "observe it, or sample it with a Gibbs kernel (DiscreteHMCGibbs).",
            )
        site.infer["enumerate"] = "parallel"
    return model, inspect_model(tr, algorithm=algorithm), tr


def _read_abstractly(
    rng_key: Any,
    model: Callable[..., Any],
    init_strategy: InitStrategy,
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    algorithm: str,
) -> tuple[Callable[..., Any], ModelSpec, Trace] | None:
    """:func:`_read_model` on a trace that runs no operation (the model is traced, as
    ``jit`` does, not executed), or ``None`` when the model needs concrete values from
    its arguments or has ``param`` sites (whose values the sampler holds fixed)."""
    box: list[tuple[Callable[..., Any], ModelSpec, Trace]] = []

    def read() -> Array:
        box.append(_read_model(rng_key, model, init_strategy, model_args, model_kwargs, algorithm))
        return jnp.zeros(())

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            jax.make_jaxpr(read)()
        except CONCRETE_VALUE_ERRORS:
            return None
    if not box or box[0][1].params:
        return None
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return box[0]


def prepare_model(
    rng_key: Any,
    model: Callable[..., Any],
    init_strategy: InitStrategy,
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    *,
    algorithm: str,
    abstract: bool = False,
) -> PreparedModel:
    """Trace ``model`` once and build what a sampler needs (see :class:`PreparedModel`).

    With ``abstract``, the trace runs no operation when it can (the sampler only needs
    the structure): the prototype then holds tracers and must not be read for values.

    Raises:
        SiteError: a latent the sampler cannot handle (named).
    """
    read = None
    if abstract:
        read = _read_abstractly(rng_key, model, init_strategy, model_args, model_kwargs, algorithm)
    if read is None:
        read = _read_model(rng_key, model, init_strategy, model_args, model_kwargs, algorithm)
    model, spec, tr = read
    key = (
        spec.names,
        tuple(spec.shapes[n] for n in spec.names),
        spec.enumerated,
        spec.deterministic,
        _digest(spec.params),
    )
    return PreparedModel(
        model, spec, make_potential(model, spec), make_postprocess(model, spec, tr), key, tr
    )


def initialize_model(
    rng_key: Array | int,
    model: Callable[..., Any],
    *,
    init_strategy: InitStrategy = init_to_uniform,
    dynamic_args: bool = False,
    model_args: tuple[Any, ...] = (),
    model_kwargs: Mapping[str, Any] | None = None,
    forward_mode_differentiation: bool = False,
    validate_grad: bool = True,
) -> ModelInfo:
    """Initial unconstrained latents, the potential energy and the postprocessing function
    (NumPyro's ``initialize_model``).

    Args:
        rng_key: a key, or a batch of keys (one starting point each).
        model: the model.
        init_strategy: where to start (:func:`init_to_uniform`, :func:`init_to_median`,
            :func:`init_to_value`, ...).
        dynamic_args: if True, ``potential_fn(*args, **kwargs)`` and
            ``postprocess_fn(*args, **kwargs)`` return the functions for those arguments.
        model_args: the model's positional arguments.
        model_kwargs: its keyword arguments.
        forward_mode_differentiation: take the gradient in forward mode.
        validate_grad: also require a finite gradient at the starting point.

    Returns:
        ``ModelInfo(ParamInfo(z, potential_energy, z_grad), potential_fn, postprocess_fn,
        model_trace)``: ``potential_fn(z)`` is minus the log density at unconstrained
        ``z``; ``postprocess_fn(z)`` gives constrained latents and deterministic sites.

    Raises:
        SiteError: a latent site the sampler cannot handle, or no finite starting point
            in 100 tries (the error names the site whose log density is not finite).

    Example:
        >>> import jax
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import initialize_model
        >>> def model():
        ...     sample("s", dist.Exponential(1.0))
        >>> info = initialize_model(jax.random.key(0), model)
        >>> z = info.param_info.z
        >>> bool(info.postprocess_fn(z)["s"] == jax.numpy.exp(z["s"]))
        True
    """
    key = _as_key(rng_key)
    kwargs = {} if model_kwargs is None else dict(model_kwargs)
    batched = _is_batched_key(key)
    first = key[0] if batched else key
    prepared = prepare_model(first, model, init_strategy, model_args, kwargs, algorithm="MCMC")
    tr = prepared.prototype
    potential, postprocess = prepared.potential, prepared.postprocess

    def find(k: Array) -> tuple[ParamInfo, Array]:
        return find_valid_initial_params(
            k,
            prepared.model,
            prepared.spec,
            init_strategy=init_strategy,
            model_args=model_args,
            model_kwargs=kwargs,
            validate_grad=validate_grad,
            forward_mode_differentiation=forward_mode_differentiation,
        )

    info, valid = jax.vmap(find)(key) if batched else find(key)
    raise_invalid_init(prepared.model, prepared.spec, info, valid, model_args, kwargs)

    if dynamic_args:

        def potential_fn(*args: Any, **kw: Any) -> Callable[[Mapping[str, Any]], Array]:
            return lambda z: potential(z, args, kw)

        def postprocess_fn(*args: Any, **kw: Any) -> Callable[[Mapping[str, Any]], Any]:
            return lambda z: postprocess(z, args, kw)

    else:

        def potential_fn(z: Mapping[str, Any]) -> Array:  # type: ignore[misc]
            return potential(z, model_args, kwargs)

        def postprocess_fn(z: Mapping[str, Any]) -> Any:  # type: ignore[misc]
            return postprocess(z, model_args, kwargs)

    return ModelInfo(info, potential_fn, postprocess_fn, tr)


SharedCache = dict[Any, tuple[Callable[..., Array], tuple[Any, ...]]]
"""Jitted potentials of one run, by argument structure (see :func:`shared_potential`)."""


def shared_potential(
    prepared: PreparedModel,
    cache: SharedCache,
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
) -> Callable[[Any], Array]:
    """``prepared.potential`` for these arguments as one jitted function, shared by every
    caller of the run (JAX caches its jaxpr: the model is traced once).

    Traced arguments are inputs of the jitted function; concrete ones stay constants, so
    a model may still read concrete values from them.
    """
    leaves, treedef = jax.tree_util.tree_flatten((tuple(model_args), dict(model_kwargs)))
    traced = tuple(i for i, leaf in enumerate(leaves) if isinstance(leaf, jax.core.Tracer))
    constants = tuple(leaf for i, leaf in enumerate(leaves) if i not in traced)
    key = (treedef, traced, tuple(id(c) for c in constants))
    entry = cache.get(key)
    if entry is None:
        positions = frozenset(traced)

        def potential(z: Any, inputs: tuple[Any, ...]) -> Array:
            given, fixed = iter(inputs), iter(constants)
            full = [next(given) if i in positions else next(fixed) for i in range(len(leaves))]
            args, kwargs = jax.tree_util.tree_unflatten(treedef, full)
            return prepared.potential(z, args, kwargs)

        # The entry holds the constants, so their ids stay theirs.
        entry = (jax.jit(potential), constants)
        cache[key] = entry
    fn = entry[0]
    inputs = tuple(leaves[i] for i in traced)
    return lambda z: fn(z, inputs)


def checked_init_params(init_params: Any, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """One chain's ``init_params``: unconstrained values for exactly the latent sites."""
    if not isinstance(init_params, Mapping):
        raise TypeError(
            f"init_params must be a dict of unconstrained values by site name, got "
            f"{type(init_params).__name__}."
        )
    missing = sorted(set(shapes) - set(init_params))
    if missing:
        raise SiteError(
            missing[0],
            f"init_params has no value for the latent site(s) {missing}; give unconstrained "
            "values for every continuous latent, or use init_strategy=init_to_value("
            "values=...) to start some of them.",
        )
    z = {}
    for name, shape in shapes.items():
        value = jnp.asarray(init_params[name])
        if value.shape != shape:
            raise SiteError(
                name,
                f"init_params['{name}'] has shape {value.shape} per chain; expected the site's "
                f"unconstrained shape {shape} (with a leading num_chains dim when num_chains > 1).",
            )
        z[name] = value
    return z
