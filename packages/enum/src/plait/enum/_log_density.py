"""The log density of a model with its enumerated sites summed out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jax import Array

from plait import Trace
from plait.enum._chain import chain_factors
from plait.enum._contract import Contraction, contract
from plait.enum._enum import enum
from plait.enum._factors import Factor
from plait.enum._probe import model_info
from plait.enum._problem import Problem, build_problem
from plait.enum._scan_body import SCAN_RECORD
from plait.errors import PlaitError, format_shapes
from plait.handlers import substitute, trace

__all__ = ["enumerated_trace", "log_density", "maybe_log_density", "solve"]


def enumerated_trace(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
    first_available_dim: int | None,
) -> tuple[Trace, Any]:
    """Run ``model`` with ``params`` substituted and its discrete sites enumerated."""
    run = substitute(model, data=params) if params else model
    with trace() as tr:
        result = enum(run, first_available_dim=first_available_dim)(*model_args, **model_kwargs)
    return tr, result


def solve(problem: Problem, semiring: str = "log") -> tuple[Contraction, list[Any]]:
    """Contract a problem: its scans reduced to chain factors, then every variable.

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
    return contract(factors, variables, plates, semiring=semiring), chains


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
    info = model_info(model, tuple(model_args), kwargs, values)
    return _log_density(model, tuple(model_args), kwargs, values, info.first_available_dim)


def maybe_log_density(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
) -> tuple[Array, Trace] | None:
    """:func:`log_density`, or ``None`` when the model enumerates nothing (the hook)."""
    info = model_info(model, model_args, model_kwargs, params)
    if not info.has_enum:
        return None
    return _log_density(model, model_args, model_kwargs, params, info.first_available_dim)


def _log_density(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
    first_available_dim: int | None,
) -> tuple[Array, Trace]:
    tr, _ = enumerated_trace(model, model_args, model_kwargs, params, first_available_dim)
    try:
        problem = build_problem(tr, SCAN_RECORD)
        contraction, _ = solve(problem)
    except PlaitError:
        raise
    except (ValueError, TypeError) as error:
        raise PlaitError(
            f"plait.enum.log_density failed: {error}\nThe trace:\n{format_shapes(tr)}"
        ) from error
    return contraction.log_value(), tr
