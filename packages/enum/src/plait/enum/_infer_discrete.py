"""``infer_discrete``: posterior draws (FFBS) or the MAP of enumerated discrete sites."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Literal, ParamSpec, TypeVar, overload

import jax
import jax.numpy as jnp
from jax import Array

from plait import Trace, current_stack, prng_key
from plait.enum._contract import backward
from plait.enum._factors import Factor, align
from plait.enum._keys import ENUM_DIM, SCAN_SITE
from plait.enum._log_density import enumerated_trace, solve
from plait.enum._problem import build_problem
from plait.enum._record import ScanRecord
from plait.errors import HandlerError
from plait.handlers import block, substitute

__all__ = ["infer_discrete", "sample_posterior"]

P = ParamSpec("P")
R = TypeVar("R")


def layout(value: Factor, dims: Mapping[str, int], leading: tuple[str, ...] = ()) -> Array:
    """Indices over named plates laid out at the plates' dims (``leading`` axes first)."""
    plates = [a for a in value.axes if a not in leading]
    rank = max((-dims[a] for a in plates), default=0)
    target = list(leading) + [f"_pad{k}" for k in range(rank)]
    for a in plates:
        target[len(leading) + rank + dims[a]] = a
    return align(value.array, value.axes, tuple(target))


def _support_values(site_value: Any, index: Array, event_ndim: int) -> Array:
    support = jnp.asarray(site_value)
    size = support.shape[0]
    event = support.shape[support.ndim - event_ndim :] if event_ndim else ()
    flat = jnp.reshape(support, (size, *tuple(event)))
    return flat[index]


def sample_posterior(
    fn: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    first_available_dim: int | None = None,
    temperature: int = 1,
    rng_key: Array | None = None,
) -> dict[str, Array]:
    """Values for the enumerated sites of ``fn``: a posterior draw or the MAP.

    Returns:
        Site name to value. A site of an enumerated ``scan`` appears once, under the name
        its stacked site has, with a value over the whole length (``_PREV_`` steps merged).
    """
    if temperature not in (0, 1):
        raise HandlerError(
            f"infer_discrete(temperature={temperature!r}): use 1 to sample from the "
            "posterior (forward-filter backward-sample) or 0 for the MAP (Viterbi)."
        )
    key = rng_key
    if temperature == 1 and key is None:
        key = prng_key() if current_stack() else None
        if key is None:
            raise HandlerError(
                "infer_discrete(temperature=1) draws random values: pass rng_key=... or run "
                "the model under plait.handlers.seed."
            )
    with block():
        tr, _ = enumerated_trace(fn, model_args, model_kwargs, {}, first_available_dim)
    return posterior_values(tr, key if temperature == 1 else None)


def posterior_values(tr: Trace, key: Array | None) -> dict[str, Array]:
    """Draw (``key``) or maximise (``None``) the enumerated sites of an enumerated trace."""
    semiring = "max" if key is None else "log"
    problem = build_problem(tr)
    contraction, chains = solve(problem, semiring)
    chain_keys: list[Array | None] = [None] * len(chains)
    if key is not None:
        key, *split = jax.random.split(key, len(chains) + 1)
        chain_keys = list(split)
    values = backward(contraction, key)
    data: dict[str, Array] = {}
    # Per scan and body site: its value at each unrolled step, and the stacked name.
    steps: dict[tuple[int, str], dict[int, tuple[str, Array]]] = {}
    records: dict[int, ScanRecord] = {}
    for var, site in problem.sites.items():
        assert site.name is not None
        index = layout(values[var], problem.plate_dims)
        value = _support_values(site.value, index, len(site.fn.event_shape))
        where = site.stash.get(SCAN_SITE)
        if where is None:
            data[site.name] = value
            continue
        record, body, step = where
        records[id(record)] = record
        steps.setdefault((id(record), body), {})[step] = (site.name, value)
    stacked_names: dict[tuple[int, str], str] = {}
    for name, site in tr.items():
        where = site.stash.get(SCAN_SITE)
        if where is not None:
            records[id(where.record)] = where.record
            if where.step < 0:
                stacked_names[(id(where.record), where.body_name)] = name
    drawn: dict[int, dict[str, Factor]] = {}
    for chain, chain_key in zip(chains, chain_keys, strict=True):
        drawn[id(chain.record)] = chain.draw(values, chain_key)
    for rid, record in records.items():
        _merge_scan(record, steps, stacked_names, drawn.get(rid, {}), data)
    for name, site in tr.items():
        # Keep the other latent values of this run, so the final run is consistent.
        if (
            site.type == "sample"
            and name not in data
            and not site.is_observed
            and ENUM_DIM not in site.stash
            and SCAN_SITE not in site.stash
        ):
            data[name] = site.value
    return data


def _merge_scan(
    record: ScanRecord,
    steps: dict[tuple[int, str], dict[int, tuple[str, Array]]],
    stacked_names: dict[tuple[int, str], str],
    drawn: dict[str, Factor],
    data: dict[str, Array],
) -> None:
    """One value per body site over the whole scan: unrolled steps and vectorised ones."""
    bodies = {b for (rid, b) in steps if rid == id(record)} | set(record.site_vars)
    for body in sorted(bodies):
        parts: list[Array] = []
        names = steps.get((id(record), body), {})
        for s in range(record.unrolled):
            if s in names:
                parts.append(names[s][1][None])
        var = record.site_vars.get(body)
        if record.steps and var is not None and var in drawn:
            index = layout(drawn[var], record.plate_dims, leading=(record.time,))
            support, event_ndim = record.supports[body]
            parts.append(_support_values(support, index, event_ndim))
        if not parts:
            continue
        shape = jnp.broadcast_shapes(*(p.shape[1:] for p in parts))
        full = jnp.concatenate([jnp.broadcast_to(p, p.shape[:1] + shape) for p in parts])
        if record.reverse:
            full = full[::-1]
        name = stacked_names.get((id(record), body))
        if name is None:  # every step was unrolled: strip the prefix of the last one
            last = names[record.unrolled - 1][0]
            name = last.replace("_PREV_", "", 1)
        data[name] = full


@overload
def infer_discrete(
    fn: None = None,
    first_available_dim: int | None = None,
    temperature: Literal[0, 1] = 1,
    rng_key: Array | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
@overload
def infer_discrete(
    fn: Callable[P, R],
    first_available_dim: int | None = None,
    temperature: Literal[0, 1] = 1,
    rng_key: Array | None = None,
) -> Callable[P, R]: ...
def infer_discrete(
    fn: Callable[P, R] | None = None,
    first_available_dim: int | None = None,
    temperature: Literal[0, 1] = 1,
    rng_key: Array | None = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """The model ``fn`` with its enumerated sites set to posterior values.

    Each call enumerates the sites marked ``infer={"enumerate": "parallel"}``, computes
    the exact posterior given the observations, and reruns ``fn`` with those sites
    substituted: a joint posterior draw (``temperature=1``, forward-filter
    backward-sample) or the MAP assignment (``temperature=0``, Viterbi). Works with
    plates, masks, ``markov`` loops and enumerated ``scan`` of any length.

    Args:
        fn: the model (with :func:`config_enumerate` or marked sites).
        first_available_dim: the rightmost dim enumeration may use; ``None`` finds it.
        temperature: 1 to sample, 0 for the MAP.
        rng_key: the key for sampling; ``None`` takes one from the enclosing ``seed``.

    Returns:
        A function with ``fn``'s signature.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import plate, sample
        >>> from plait.enum import config_enumerate, infer_discrete
        >>> @config_enumerate
        ... def mixture(y):
        ...     with plate("data", 3):
        ...         z = sample("z", dist.Bernoulli(0.5))
        ...         sample("y", dist.Normal(4.0 * z, 1.0), obs=y)
        ...     return z
        >>> infer_discrete(mixture, temperature=0)(jnp.array([0.1, 3.9, 4.2]))
        Array([0, 1, 1], dtype=int32)
    """
    if fn is None:
        return functools.partial(  # type: ignore[return-value]
            infer_discrete,
            first_available_dim=first_available_dim,
            temperature=temperature,
            rng_key=rng_key,
        )
    model = fn

    @functools.wraps(model)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        data = sample_posterior(model, args, kwargs, first_available_dim, temperature, rng_key)
        return substitute(model, data=data)(*args, **kwargs)

    return wrapped
