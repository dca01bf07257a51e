"""The module plait registers through the ``plait`` entry point."""

from __future__ import annotations

from typing import Any

from plait import PluginInfo, hookimpl


@hookimpl
def plait_plugin_info() -> PluginInfo:
    return PluginInfo("temper", "0.1.0", ("temper", "Gaussian adapter"), "plait-temper")


@hookimpl
def plait_adapt_distribution(fn: object) -> Any:
    from plait_temper._gaussian import Gaussian

    if not isinstance(fn, Gaussian):
        return None
    import numpyro.distributions as dist

    return dist.Normal(fn.mean, fn.std)
