"""The log density of a model with its enumerated sites summed out, from one run.

The model runs once under :class:`~plait.enum.enum`. Where no one gave
``first_available_dim``, enumeration must use the dims left of *every* plate of the model
(as NumPyro's ``max_plate_nesting``), which is only known once the model has run: the run
starts from the nesting this model had last time (or, the first time, the plates seen
before the first enumerated site), and is repeated with the right dim in the rare case the
model's nesting turns out different (after a plain run that finds it, ``_nesting.py``, if
the guess made the run fail). A remembered nesting can cost a second run, never a
different result.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
from jax import Array

from plait import Messenger, Trace, log_prob_sum
from plait.enum._chain import Chain, chain_factors
from plait.enum._contract import Contraction, contract
from plait.enum._dims import _STATE, MAX_DIMS, DimState
from plait.enum._enum import enum
from plait.enum._factors import Factor, align
from plait.enum._keys import ENUM_DIM, SCAN_RECORD
from plait.enum._nesting import plate_nesting
from plait.enum._problem import Problem, build_problem
from plait.errors import PlaitError, SiteError, format_shapes
from plait.handlers import substitute, trace

__all__ = ["enumerated_trace", "log_density", "log_factors", "maybe_log_density", "solve"]

_NESTING: weakref.WeakKeyDictionary[Callable[..., Any], int] = weakref.WeakKeyDictionary()
"""The plate nesting each model function had on its last enumerated run."""


def _innermost(model: Callable[..., Any]) -> Callable[..., Any]:
    """The function a chain of handlers (and ``functools.partial``) wraps."""
    while True:
        if isinstance(model, Messenger) and model.fn is not None:
            model = model.fn
        elif isinstance(model, functools.partial):
            model = model.func
        else:
            return model


def _remembered(model: Callable[..., Any]) -> int | None:
    try:
        return _NESTING.get(_innermost(model))
    except TypeError:  # not weak-referenceable
        return None


def _remember(model: Callable[..., Any], nesting: int) -> None:
    with contextlib.suppress(TypeError):  # not weak-referenceable
        _NESTING[_innermost(model)] = nesting


def enumerates(tr: Trace) -> bool:
    """Whether a trace run under ``enum`` has enumerated sites."""
    return any(ENUM_DIM in site.stash or SCAN_RECORD in site.stash for site in tr.values())


def enumerated_trace(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
    first_available_dim: int | None = None,
    given: Mapping[str, int] | None = None,
) -> tuple[Trace, Any]:
    """Run ``model`` with ``params`` substituted and its discrete sites enumerated, on the
    dims left of every plate of the model unless ``first_available_dim`` says otherwise.
    ``given`` names dims that values given to the model already hold (site name to dim):
    they are visible to every site and no site of the model takes them."""
    run = substitute(model, data=params) if params else model
    guess = first_available_dim
    if guess is None:
        nesting = _remembered(model)
        guess = None if nesting is None else -nesting - 1
    for _ in range(MAX_DIMS):
        state = DimState(-1 if guess is None else guess, automatic=guess is None)
        state.guessed = first_available_dim is None
        state.global_frame.dims.update({dim: name for name, dim in (given or {}).items()})
        token = _STATE.set(state)
        try:
            with trace() as tr:
                result = enum(run)(*model_args, **model_kwargs)
        except SiteError:
            # Perhaps a plate deeper than the guess met an enumerated dim: find the model's
            # nesting with a plain run, and run again left of it if that changes the dim.
            if not state.guessed:
                raise
            nesting = plate_nesting(model, model_args, model_kwargs, params)
            if -nesting - 1 >= state.first_available_dim:
                raise
            guess = -nesting - 1
            continue
        finally:
            _STATE.reset(token)
        right = -state.nesting - 1
        wrong = state.guessed and not state.automatic and state.first_available_dim != right
        if wrong and enumerates(tr):
            guess = right
            continue
        if state.guessed:
            _remember(model, state.nesting)
        return tr, result
    raise PlaitError("plait.enum: the model's plate nesting changed on every run.")


def solve(
    problem: Problem, semiring: str = "log", keep: frozenset[str] = frozenset()
) -> tuple[Contraction, list[Chain]]:
    """Contract a problem: its scans reduced to chain factors, then every variable but
    ``keep``.

    Returns the global contraction and, per scan, what its backward pass needs.
    """
    factors: list[Factor] = list(problem.factors)
    variables = dict(problem.variables)
    plates = dict(problem.plates)
    chains = []
    for record, step_factors in problem.scans:
        chain = chain_factors(record, semiring, problem.variables, list(step_factors.values()))
        factors.extend(chain.factors)
        variables.update(chain.variables)
        plates.update(chain.plates)
        chains.append(chain)
    return contract(factors, variables, plates, keep=keep, semiring=semiring), chains


def log_density(
    model: Callable[..., Any],
    model_args: tuple[Any, ...] = (),
    model_kwargs: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
) -> tuple[Array, Trace]:
    """The log joint density of ``model`` with every enumerated site summed out.

    Sites marked ``infer={"enumerate": "parallel"}`` (see :func:`config_enumerate`) are
    enumerated (the model is run under :class:`enum` unless it already is) and summed
    out exactly by tensor variable elimination over the plates, in log space; the
    discrete states of an enumerated ``scan`` are summed out by a chain contraction over
    time. Works under ``jax.jit`` and ``jax.grad``.

    Args:
        model: the model.
        model_args: its positional arguments.
        model_kwargs: its keyword arguments.
        params: values of sites by name (substituted; such sites are not enumerated).

    Returns:
        ``(log_joint, trace)``: a scalar and the enumerated trace.

    Example:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import plate, sample
        >>> from plait.enum import config_enumerate, log_density
        >>> @config_enumerate
        ... def mixture(y):
        ...     with plate("data", 2):
        ...         z = sample("z", dist.Bernoulli(0.5))
        ...         sample("y", dist.Normal(2.0 * z, 1.0), obs=y)
        >>> value, _ = log_density(mixture, (jnp.array([0.0, 2.0]),))
        >>> exact = 2 * jnp.log(0.5 * jnp.exp(dist.Normal(0.0, 1.0).log_prob(0.0))
        ...                     + 0.5 * jnp.exp(dist.Normal(2.0, 1.0).log_prob(0.0)))
        >>> bool(jnp.allclose(value, exact))
        True
    """
    kwargs = {} if model_kwargs is None else model_kwargs
    values = {} if params is None else params
    tr, _ = enumerated_trace(model, tuple(model_args), kwargs, values)
    return _contracted(tr), tr


def maybe_log_density(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
) -> tuple[Array, Trace]:
    """:func:`log_density` for the ``plait_log_density`` hook: one run of the model; a run
    that enumerated nothing is summed plainly (:func:`plait.log_prob_sum`)."""
    tr, _ = enumerated_trace(model, model_args, model_kwargs, params)
    if not enumerates(tr):
        return log_prob_sum(tr), tr
    return _contracted(tr), tr


def _contracted(tr: Trace) -> Array:
    if not enumerates(tr):
        return log_prob_sum(tr)
    try:
        problem = build_problem(tr)
        contraction, _ = solve(problem)
    except PlaitError:
        raise
    except (ValueError, TypeError) as error:
        raise SiteError(
            None, f"plait.enum.log_density failed: {error}\nThe trace:\n{format_shapes(tr)}"
        ) from error
    return contraction.log_value()


def log_factors(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
    first_available_dim: int,
    given: Mapping[str, int],
) -> tuple[list[Array], Trace]:
    """The log joint of ``model`` as log-factors of the enumerated values it is given,
    its own enumerated sites summed out (the ``plait_log_factors`` hook).

    ``given`` maps the sites whose values arrive enumerated (a guide's, replayed) to their
    dims; the model enumerates its own sites from ``first_available_dim``, left of them.
    The elimination keeps the given variables, and the plates they live in: each factor
    comes back laid out in the model's batch dims (a given variable's values on its dim,
    a plate on its dim, size 1 elsewhere), with its plates' subsampling scales applied,
    and the factors sum (broadcast) to the log joint at every joint given value.

    Example:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import plate, sample
        >>> from plait.handlers import substitute
        >>> def model():
        ...     with plate("data", 3):
        ...         z = sample("z", dist.Bernoulli(0.3))
        ...         w = sample("w", dist.Bernoulli(0.2 + 0.5 * z), infer={"enumerate": "parallel"})
        ...         sample("y", dist.Normal(w, 1.0), obs=jnp.zeros(3))
        >>> z = jnp.array([0, 1]).reshape(2, 1)  # z enumerated on dim -2, as a guide gives it
        >>> factors, _ = log_factors(substitute(model, data={"z": z}), (), {}, {}, -3, {"z": -2})
        >>> [tuple(f.shape) for f in factors]  # by value of z (dim -2) and data point (dim -1)
        [(2, 3), (2, 3)]
    """
    tr, _ = enumerated_trace(model, model_args, model_kwargs, params, first_available_dim, given)
    try:
        problem = build_problem(tr, given)
        contraction, _ = solve(problem, keep=frozenset(given))
    except PlaitError:
        raise
    except (ValueError, TypeError) as error:
        raise SiteError(
            None, f"plait.enum.log_factors failed: {error}\nThe trace:\n{format_shapes(tr)}"
        ) from error
    dims = {**problem.plate_dims, **given}
    return [_laid_out(f, dims, problem) for f in contraction.factors], tr


def _laid_out(f: Factor, dims: Mapping[str, int], problem: Problem) -> Array:
    """A result factor in the model's batch dims, times its plates' subsampling scales
    (the plates it still lives in took no product)."""
    for axis in f.axes:
        if axis not in dims:
            raise SiteError(
                None,
                f"plait.enum.log_factors: a factor over {list(f.axes)} keeps '{axis}', "
                "which has no dim of its own in the model (an enumerated scan's time axis, "
                "say); only plates and the given variables can be kept.",
            )
    placed = sorted(f.axes, key=lambda a: dims[a])
    array = align(f.array, f.axes, placed)
    rank = max((-dims[a] for a in placed), default=0)
    shape = [1] * rank
    for axis in placed:
        shape[rank + dims[axis]] = f.sizes[axis]
    array = jnp.reshape(array, shape)
    scale = 1.0
    for p in f.ordinal:
        scale *= problem.plates[p].scale
    return array * scale if scale != 1.0 else array
