"""plait-gaussian's hook implementations (the ``plait`` entry point ``gaussian``)."""

from __future__ import annotations

from plait import PluginInfo, hookimpl


@hookimpl
def plait_plugin_info() -> PluginInfo:
    from plait.gaussian import __all__ as provided
    from plait.gaussian.__about__ import __version__

    return PluginInfo("gaussian", __version__, tuple(provided), "plait-gaussian")
