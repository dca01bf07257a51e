"""plait-viz's hook implementations (the ``plait`` entry point ``viz``)."""

from __future__ import annotations

from plait import PluginInfo, hookimpl


@hookimpl
def plait_plugin_info() -> PluginInfo:
    from plait.viz import __all__ as provided
    from plait.viz.__about__ import __version__

    return PluginInfo("viz", __version__, tuple(provided), "plait-viz")
