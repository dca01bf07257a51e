"""The plugin manager: lazy entry-point loading, failure isolation, typed hook wrappers.

No other module calls ``pm.hook.*``.
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
    "log_density",
    "plugin_manager",
    "plugins",
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
    """The process-wide plugin manager, loading the ``plait`` entry points on first use."""
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


def register(plugin: object, name: str | None = None) -> None:
    """Register a plugin object by hand (a module or an object with hook functions).

    Example:
        >>> from plait import hookimpl, PluginInfo
        >>> from plait._plugins import register, unregister
        >>> class Mine:
        ...     @hookimpl
        ...     def plait_plugin_info(self) -> PluginInfo:
        ...         return PluginInfo("mine", "0.0", ("nothing",))
        >>> register(Mine(), name="mine")
        >>> unregister("mine")
    """
    plugin_manager().register(plugin, name=name)


def unregister(name: str) -> None:
    """Unregister the plugin registered as ``name``."""
    plugin_manager().unregister(name=name)


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
    """What the ``plait_adapt_distribution`` hook makes of ``fn`` (``None``: nothing)."""
    result: Distribution | None = plugin_manager().hook.plait_adapt_distribution(fn=fn)
    return result


def log_density(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
) -> tuple[Array, Trace] | None:
    """What the ``plait_log_density`` hook answers (``None``: no plugin answered)."""
    result: tuple[Array, Trace] | None = plugin_manager().hook.plait_log_density(
        model=model, model_args=model_args, model_kwargs=model_kwargs, params=params
    )
    return result
