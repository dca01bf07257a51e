"""The plugin manager: lazy entry-point loading, failure isolation, typed hook wrappers.

No other module calls ``pm.hook.*``. The public names are re-exported by :mod:`plait`
(``register``, ``unregister``, ``plugin_manager``, ``plugins``, ``failed_plugins``) and
the typed hook callers by :mod:`plait.hooks`.
"""

from __future__ import annotations

import importlib.metadata
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

from plait import hookspecs
from plait.errors import PluginLoadWarning
from plait.hookspecs import PluginInfo

if TYPE_CHECKING:
    from jax import Array

    from plait._distribution import Distribution
    from plait._message import Trace

__all__ = [
    "ENTRY_POINT_GROUP",
    "adapt_distribution",
    "failed_plugins",
    "infer_discrete",
    "log_density",
    "plugin_manager",
    "plugins",
    "register",
    "unregister",
]

ENTRY_POINT_GROUP = "plait"

_lock = threading.Lock()
_manager: pluggy.PluginManager | None = None
_failed: dict[str, str] = {}


def _new_manager() -> pluggy.PluginManager:
    from plait import _builtin

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    # Historic: every plugin registered from now on is offered the manager to add hooks.
    pm.hook.plait_addhooks.call_historic(kwargs={"pluginmanager": pm})
    pm.register(_builtin, name="core")
    return pm


def load_entry_points(
    pm: pluggy.PluginManager, entry_points: Iterable[importlib.metadata.EntryPoint]
) -> dict[str, str]:
    """Register each entry point's plugin; one warning per failure, the rest goes on.

    Returns: the failures, plugin name to error text.
    """
    failures: dict[str, str] = {}
    for ep in entry_points:
        if pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as error:
            dist = getattr(ep, "dist", None)
            origin = f" ({dist.name} {dist.version})" if dist is not None else ""
            text = f"{type(error).__name__}: {error}"
            failures[ep.name] = text
            warnings.warn(
                f"plait: plugin '{ep.name}'{origin} failed to load: {text}; continuing without it",
                PluginLoadWarning,
                stacklevel=3,
            )
    pm.check_pending()
    return failures


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide :class:`pluggy.PluginManager` of plait (project ``"plait"``).

    Loads the ``plait`` entry points on first use. Use it to inspect what is registered
    (``plugin_manager().list_name_plugin()``), or to call the hooks a plugin added
    through ``plait_addhooks``; plait's own hooks have typed callers in
    :mod:`plait.hooks`.

    Example:
        >>> import plait
        >>> plait.plugin_manager().has_plugin("core")
        True
    """
    global _manager
    if _manager is None:
        with _lock:
            if _manager is None:
                pm = _new_manager()
                _failed.update(load_entry_points(pm, _entry_points()))
                _manager = pm
    return _manager


def reset() -> None:
    """Forget the loaded plugins; the next use loads the entry points again (for tests)."""
    global _manager
    with _lock:
        _manager = None
        _failed.clear()


def register(plugin: object, name: str | None = None) -> str | None:
    """Register a plugin object by hand, without an entry point (tests, notebooks).

    ``plugin`` is a module, a class or an instance whose functions are marked with
    :data:`plait.hookimpl`; it answers hooks from now on, exactly as one found through
    the ``plait`` entry points (which load first).

    Args:
        plugin: the object holding the hook implementations.
        name: the name to register it under (default: pluggy's, from the object).

    Returns:
        The name it was registered under (``None`` if it was blocked).

    Raises:
        ValueError: ``plugin`` or ``name`` is registered already.
        pluggy.PluginValidationError: a hook implementation does not match its
            specification.

    Example:
        >>> import plait
        >>> class Mine:
        ...     @plait.hookimpl
        ...     def plait_plugin_info(self) -> plait.PluginInfo:
        ...         return plait.PluginInfo("mine", "0.0", ("nothing",))
        >>> plait.register(Mine(), name="mine")
        'mine'
        >>> "mine" in [info.name for info in plait.plugins()]
        True
        >>> _ = plait.unregister("mine")
    """
    registered: str | None = plugin_manager().register(plugin, name=name)
    return registered


def unregister(plugin: object | None = None, name: str | None = None) -> object:
    """Unregister a plugin, given the object or the name it was registered under (a
    string ``plugin`` is taken as the name).

    Returns:
        The plugin object that was unregistered.

    Raises:
        ValueError: no plugin is registered under that name (or as that object).

    Example:
        >>> import plait
        >>> class Mine:
        ...     pass
        >>> mine = Mine()
        >>> plait.register(mine, name="mine")
        'mine'
        >>> plait.unregister("mine") is mine
        True
    """
    if isinstance(plugin, str) and name is None:
        plugin, name = None, plugin
    pm = plugin_manager()
    if plugin is None and name is None:
        raise ValueError("unregister() needs the plugin or its name: unregister('name').")
    if name is not None and not pm.has_plugin(name):
        raise ValueError(
            f"no plait plugin is registered as {name!r}; registered: "
            f"{sorted(n for n, _ in pm.list_name_plugin())}."
        )
    if plugin is not None and not pm.is_registered(plugin):
        raise ValueError(f"{plugin!r} is not a registered plait plugin.")
    removed: object = pm.unregister(plugin=plugin, name=name)
    return removed


def plugins() -> list[PluginInfo]:
    """The plait plugins found through entry points, with versions and what they provide.

    Loads the entry points on first use. Plugins that failed to load are left out (a
    :class:`plait.errors.PluginLoadWarning` said why; :func:`failed_plugins` lists them).

    Example:
        >>> import plait
        >>> "core" in [info.name for info in plait.plugins()]
        True
    """
    infos: list[PluginInfo] = plugin_manager().hook.plait_plugin_info()
    return sorted(infos, key=lambda info: (info.name != "core", info.name))


def failed_plugins() -> dict[str, str]:
    """Plugins whose entry point failed to load: name to error text.

    Example:
        >>> import plait
        >>> plait.failed_plugins()
        {}
    """
    plugin_manager()
    return dict(_failed)


def adapt_distribution(fn: object) -> Distribution | None:
    """What the ``plait_adapt_distribution`` hook makes of ``fn`` (``None``: nothing).

    Example:
        >>> import plait
        >>> plait.hooks.adapt_distribution(object()) is None  # no plugin knows it
        True
    """
    result: Distribution | None = plugin_manager().hook.plait_adapt_distribution(fn=fn)
    return result


def log_density(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
) -> tuple[Array, Trace] | None:
    """What the ``plait_log_density`` hook answers (``None``: no plugin answered).

    Example:
        >>> import numpyro.distributions as dist
        >>> import plait
        >>> def model():
        ...     plait.sample("x", dist.Normal(0.0, 1.0), obs=0.0)
        >>> value, trace = plait.hooks.log_density(model, (), {}, {})  # plait-infer answers
        >>> round(float(value), 4)
        -0.9189
    """
    result: tuple[Array, Trace] | None = plugin_manager().hook.plait_log_density(
        model=model, model_args=model_args, model_kwargs=model_kwargs, params=params
    )
    return result


def log_factors(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    first_available_dim: int,
    given: Mapping[str, int],
) -> tuple[list[Array], Trace] | None:
    """What the ``plait_log_factors`` hook answers: the model's log joint as log-factors of
    the enumerated values ``given`` to it (site name to dim), its own enumerated sites
    summed out; ``None`` when no plugin answers (plait-enum is not installed).

    Example:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> import plait
        >>> from plait.handlers import substitute
        >>> def model():
        ...     z = plait.sample("z", dist.Bernoulli(0.5))
        ...     plait.sample("w", dist.Bernoulli(0.2 + 0.5 * z), infer={"enumerate": "parallel"})
        >>> given = substitute(model, data={"z": jnp.array([0, 1])})
        >>> factors, _ = plait.hooks.log_factors(
        ...     given, (), {}, {}, first_available_dim=-2, given={"z": -1})  # plait-enum
        >>> [round(float(v), 4) for v in sum(factors)]  # log p(z), w summed out
        [-0.6931, -0.6931]
    """
    result: tuple[list[Array], Trace] | None = plugin_manager().hook.plait_log_factors(
        model=model,
        model_args=model_args,
        model_kwargs=model_kwargs,
        params=params,
        first_available_dim=first_available_dim,
        given=given,
    )
    return result


def infer_discrete(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    *,
    temperature: int = 1,
    rng_key: Array | None = None,
) -> Trace | None:
    """What the ``plait_infer_discrete`` hook answers: the trace of a run of ``model`` with
    its enumerated sites at posterior (``temperature=1``) or MAP (``0``) values;
    ``None`` when no plugin answers (plait-enum is not installed).

    Example:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> import plait
        >>> def model(y):
        ...     z = plait.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
        ...     plait.sample("y", dist.Normal(4.0 * z, 1.0), obs=y)
        >>> trace = plait.hooks.infer_discrete(model, (4.1,), {}, temperature=0)  # plait-enum
        >>> int(trace["z"].value)
        1
    """
    result: Trace | None = plugin_manager().hook.plait_infer_discrete(
        model=model,
        model_args=model_args,
        model_kwargs=model_kwargs,
        temperature=temperature,
        rng_key=rng_key,
    )
    return result


def enumerate_sites(fn: Callable[..., Any], first_available_dim: int) -> Callable[..., Any] | None:
    """What the ``plait_enumerate`` hook answers: ``fn`` with its sites marked
    ``infer={"enumerate": "parallel"}`` enumerated from ``first_available_dim``; ``None``
    when no plugin answers (plait-enum is not installed).

    Example:
        >>> import numpyro.distributions as dist
        >>> import plait
        >>> from plait.handlers import trace
        >>> def guide():
        ...     plait.sample("z", dist.Bernoulli(0.3), infer={"enumerate": "parallel"})
        >>> enumerated = plait.hooks.enumerate_sites(guide, first_available_dim=-1)  # plait-enum
        >>> trace(enumerated).get_trace()["z"].value.tolist()
        [0, 1]
    """
    result: Callable[..., Any] | None = plugin_manager().hook.plait_enumerate(
        fn=fn, first_available_dim=first_available_dim
    )
    return result
