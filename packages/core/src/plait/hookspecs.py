"""The plait hook specification: what a plugin may implement.

A plugin is a module (or object) registered through the ``plait`` entry-point group::

    [project.entry-points.plait]
    myplugin = "mypackage._plait_plugin"

whose functions are marked with :data:`hookimpl` and named after the hooks below.
Hooks run in Python at trace time, never inside compiled code, and are called once per
trace or per foreign object, never once per site per handler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import pluggy

if TYPE_CHECKING:
    from jax import Array

    from plait._distribution import Distribution
    from plait._message import Trace

__all__ = [
    "PluginInfo",
    "hookimpl",
    "hookspec",
    "plait_adapt_distribution",
    "plait_addhooks",
    "plait_infer_discrete",
    "plait_log_density",
    "plait_plugin_info",
]

PROJECT = "plait"
hookspec = pluggy.HookspecMarker(PROJECT)
"""Marks a hook specification (for plugins that add hooks of their own)."""
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin's implementation of a hook: ``@hookimpl def plait_plugin_info(): ...``."""


class PluginInfo(NamedTuple):
    """What a plugin tells about itself (see :func:`plait_plugin_info`).

    Fields:
        name: the plugin's short name (its entry-point name).
        version: the version of the distribution that ships it.
        provides: the public names it adds (handlers, primitives, adapters).
        distribution: the name of the distribution that ships it, if known.
    """

    name: str
    version: str
    provides: tuple[str, ...]
    distribution: str | None = None


@hookspec
def plait_plugin_info() -> PluginInfo:
    """Describe the plugin for :func:`plait.plugins` and ``python -m plait``.

    Called: when the plugins are listed. Every plugin should implement it.
    Returns: a :class:`PluginInfo`.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def plait_adapt_distribution(fn: object) -> Distribution | None:
    """Turn a foreign distribution object into one plait can use.

    Called: when a ``sample`` site gets an ``fn`` that lacks the
    :class:`plait.Distribution` methods, once per such object.

    Args:
        fn: the object given to ``sample``.

    Returns: an object satisfying :class:`plait.Distribution`, or ``None`` when this
    plugin does not know ``fn``'s type. The first non-``None`` result wins.

    Must not: raise for types it does not know (return ``None``).
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def plait_log_density(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
) -> tuple[Array, Trace] | None:
    """The joint log density of ``model`` with the sites in ``params`` substituted.

    Called: by ``plait.infer.log_density`` (and everything built on it: potential
    energies, ELBOs, MCMC), once per evaluation, in Python at trace time.

    Args:
        model: the model function.
        model_args: its positional arguments.
        model_kwargs: its keyword arguments.
        params: values for sites by name (latent samples, params).

    Returns: ``(log_joint, trace)``, or ``None`` to let another implementation answer.
    The first non-``None`` result wins; plait-infer's plain sum is the last resort, and
    plait-enum answers for models with enumerated sites (summing them out).

    Must not: keep state between calls (the result is traced by ``jax.jit``).
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def plait_log_factors(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
    first_available_dim: int,
    given: Mapping[str, int],
) -> tuple[list[Array], Trace] | None:
    """The log joint density of ``model`` as log-factors of enumerated values it is
    given, with the sites it enumerates itself summed out.

    Called: by ``plait.infer.TraceEnum_ELBO`` when the guide enumerates sites inside
    plates and the model enumerates sites of its own, once per evaluation, in Python at
    trace time. The model replays the guide's enumerated values.

    Args:
        model: the model function (the guide's values replayed into it).
        model_args: its positional arguments.
        model_kwargs: its keyword arguments.
        params: values for sites by name.
        first_available_dim: the rightmost batch dim free for the model's own
            enumeration (left of the given values' dims).
        given: the sites whose values arrive enumerated, each with its dim.

    Returns: ``(factors, trace)``: arrays laid out in the model's batch dims (a given
    site's values on its dim, a plate on its dim, size 1 elsewhere) that sum, broadcast,
    to the log joint at every joint given value, keeping the plates of the given sites
    they depend on (so that the caller can take expectations plate element by plate
    element); or ``None`` to let another implementation answer. The first non-``None``
    result wins; plait-enum answers.

    Must not: keep state between calls (the result is traced by ``jax.jit``).
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def plait_infer_discrete(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    temperature: int,
    rng_key: Array | None,
) -> Trace | None:
    """Run ``model`` with its marginalised (enumerated) sites set to posterior values.

    Called: by ``plait.infer.Predictive(..., infer_discrete=True)``, once per draw, in
    Python at trace time, inside the caller's handlers (its ``seed`` gives the keys of
    the model's other random sites).

    Args:
        model: the model function (its other sites may be substituted already).
        model_args: its positional arguments.
        model_kwargs: its keyword arguments.
        temperature: ``1`` to draw the sites from their exact posterior given the
            observations, ``0`` for their joint MAP.
        rng_key: the key of the posterior draw (``temperature=1``); ``None`` takes one
            from the enclosing ``seed``.

    Returns: the trace of one run of ``model`` in which the sites the plugin sums out
    carry the drawn (or MAP) values, or ``None`` to let another implementation answer.
    The first non-``None`` result wins; plait-enum answers with
    :func:`plait.enum.infer_discrete`.

    Must not: keep state between calls (the caller may trace it under ``jax.vmap`` or
    ``jax.jit``).
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def plait_enumerate(
    fn: Callable[..., Any], first_available_dim: int
) -> Callable[..., Any] | None:
    """``fn`` with its sites marked ``infer={"enumerate": "parallel"}`` enumerated: each
    such site takes its whole support as its value, on a batch dim of its own.

    Called: by ``plait.infer.TraceEnum_ELBO`` on a guide that enumerates sites, once per
    evaluation, in Python at trace time.

    Args:
        fn: the model or guide.
        first_available_dim: the rightmost batch dim free for enumeration (negative, left
            of every plate).

    Returns: the wrapped function (NumPyro's ``enum(fn, first_available_dim)``), or
    ``None`` to let another implementation answer; plait-enum answers with
    :class:`plait.enum.enum`.

    Must not: run ``fn`` (the caller runs the result under its own handlers).
    """
    raise NotImplementedError


@hookspec(historic=True)
def plait_addhooks(pluginmanager: pluggy.PluginManager) -> None:
    """Add hook specifications of a plugin's own, for other plugins to implement.

    Called: once per plugin, when it is registered (historic: late registrations see it).
    Callers of such hooks must tolerate plugins that do not implement them.
    """
