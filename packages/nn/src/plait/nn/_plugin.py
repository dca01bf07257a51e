"""plait-nn's hook implementations (the ``plait`` entry point ``nn``)."""

from __future__ import annotations

from plait import PluginInfo, hookimpl


@hookimpl
def plait_plugin_info() -> PluginInfo:
    from plait.nn import __all__ as provided
    from plait.nn.__about__ import __version__

    return PluginInfo("nn", __version__, tuple(provided), "plait-nn")
