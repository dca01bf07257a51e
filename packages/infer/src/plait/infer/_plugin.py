"""plait-infer's hook implementations (the ``plait`` entry point ``infer``).

plait-infer answers ``plait_log_density`` last (``trylast``), so plait-enum's enumerated
log density wins for models with enumerated sites.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from plait import PluginInfo, hookimpl

if TYPE_CHECKING:
    from jax import Array

    from plait import Trace


@hookimpl
def plait_plugin_info() -> PluginInfo:
    from plait.infer import __all__ as provided
    from plait.infer.__about__ import __version__

    return PluginInfo("infer", __version__, tuple(provided), "plait-infer")


@hookimpl(trylast=True)
def plait_log_density(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
) -> tuple[Array, Trace]:
    from plait.infer._log_density import sum_log_density

    return sum_log_density(model, model_args, model_kwargs, params)
