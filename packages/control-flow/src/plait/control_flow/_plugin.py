"""plait-control-flow's hook implementations (the ``plait`` entry point ``control_flow``)."""

from __future__ import annotations

from plait import PluginInfo, hookimpl


@hookimpl
def plait_plugin_info() -> PluginInfo:
    from plait.control_flow import __all__ as provided
    from plait.control_flow.__about__ import __version__

    return PluginInfo("control_flow", __version__, tuple(provided), "plait-control-flow")
