"""plait-handlers' hook implementations (the ``plait`` entry point ``handlers``)."""

from __future__ import annotations

from plait import PluginInfo, hookimpl


@hookimpl
def plait_plugin_info() -> PluginInfo:
    from plait.handlers import __all__ as provided
    from plait.handlers.__about__ import __version__

    return PluginInfo("handlers", __version__, tuple(provided), "plait-handlers")
