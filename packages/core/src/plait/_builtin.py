"""plait-core's own hook implementations, registered as the plugin ``core``."""

from __future__ import annotations

from plait.__about__ import __version__
from plait.hookspecs import PluginInfo, hookimpl


@hookimpl
def plait_plugin_info() -> PluginInfo:
    return PluginInfo(
        name="core",
        version=__version__,
        provides=(
            "sample",
            "param",
            "plate",
            "plate_stack",
            "deterministic",
            "factor",
            "mutable",
            "prng_key",
            "subsample",
            "get_mask",
            "kernels",
        ),
        distribution="plait-core",
    )
