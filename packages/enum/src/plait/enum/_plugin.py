"""plait-enum's hook implementations (the ``plait`` entry point ``enum``).

``plait_log_density`` runs the model once under ``enum``: enumerated sites are summed out,
and a run that enumerated nothing is summed plainly (so the model never runs twice).
``plait_log_factors`` does the same but keeps the variables of values given enumerated
(a guide's), with their plates.
``plait_enumerate`` answers with :class:`plait.enum.enum` and ``plait_infer_discrete``
with :func:`plait.enum.infer_discrete`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

from plait import PluginInfo, hookimpl

if TYPE_CHECKING:
    from jax import Array

    from plait import Trace


@hookimpl
def plait_plugin_info() -> PluginInfo:
    from plait.enum import __all__ as provided
    from plait.enum.__about__ import __version__

    return PluginInfo("enum", __version__, tuple(provided), "plait-enum")


@hookimpl
def plait_log_density(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
) -> tuple[Array, Trace]:
    from plait.enum._log_density import maybe_log_density

    return maybe_log_density(model, model_args, model_kwargs, params)


@hookimpl
def plait_log_factors(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
    first_available_dim: int,
    given: Mapping[str, int],
) -> tuple[list[Array], Trace]:
    from plait.enum._log_density import log_factors

    return log_factors(model, model_args, model_kwargs, params, first_available_dim, given)


@hookimpl
def plait_enumerate(fn: Callable[..., Any], first_available_dim: int) -> Callable[..., Any]:
    from plait.enum import enum

    return enum(fn, first_available_dim=first_available_dim)


@hookimpl
def plait_infer_discrete(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    temperature: int,
    rng_key: Array | None,
) -> Trace:
    from plait.enum import infer_discrete
    from plait.handlers import trace

    # infer_discrete itself rejects a temperature other than 0 or 1.
    drawn = infer_discrete(model, temperature=cast(Literal[0, 1], temperature), rng_key=rng_key)
    return trace(drawn).get_trace(*model_args, **model_kwargs)
