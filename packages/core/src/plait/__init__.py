"""plait: NumPyro-style effect-handler modelling on JAX, built from plugins.

plait-core holds the primitives, the handler stack, the plugin hooks and the shared JAX
kernels (:mod:`plait.kernels`). Handlers (:mod:`plait.handlers`), ``scan``
(:mod:`plait.control_flow`), enumeration (:mod:`plait.enum`), networks (:mod:`plait.nn`)
and inference (:mod:`plait.infer`) are separately installed plugins.

As with ``import numpyro``, ``import plait`` is enough to reach each installed
subpackage (``plait.handlers.seed``, ``plait.infer.NUTS``): it is imported on first
access, so ``import plait`` itself stays as cheap as before.
"""

import importlib
import importlib.util
from pkgutil import extend_path
from types import ModuleType
from typing import TYPE_CHECKING

__path__ = extend_path(__path__, __name__)

from plait import hooks as hooks
from plait.__about__ import __version__ as __version__
from plait._config import enable_validation as enable_validation
from plait._config import enable_x64 as enable_x64
from plait._config import set_host_device_count as set_host_device_count
from plait._config import set_platform as set_platform
from plait._config import validation_enabled as validation_enabled
from plait._distribution import Distribution as Distribution
from plait._distribution import as_distribution as as_distribution
from plait._log_prob import log_prob_sum as log_prob_sum
from plait._log_prob import site_log_prob as site_log_prob
from plait._message import InferDict as InferDict
from plait._message import Message as Message
from plait._message import MessageKey as MessageKey
from plait._message import MessageType as MessageType
from plait._message import PlateFrame as PlateFrame
from plait._message import Stash as Stash
from plait._message import StashKey as StashKey
from plait._message import Trace as Trace
from plait._messenger import ControlFlowStep as ControlFlowStep
from plait._messenger import Messenger as Messenger
from plait._plate import plate as plate
from plait._plate import plate_batch_shape as plate_batch_shape
from plait._plate import plate_stack as plate_stack
from plait._plugins import failed_plugins as failed_plugins
from plait._plugins import plugin_manager as plugin_manager
from plait._plugins import plugins as plugins
from plait._plugins import register as register
from plait._plugins import unregister as unregister
from plait._primitives import deterministic as deterministic
from plait._primitives import factor as factor
from plait._primitives import get_mask as get_mask
from plait._primitives import mutable as mutable
from plait._primitives import param as param
from plait._primitives import prng_key as prng_key
from plait._primitives import sample as sample
from plait._primitives import subsample as subsample
from plait._runtime import apply_stack as apply_stack
from plait._runtime import current_stack as current_stack
from plait._runtime import default_process_message as default_process_message
from plait._runtime import isolated_stack as isolated_stack
from plait._unit import Unit as Unit
from plait.errors import ConfigError as ConfigError
from plait.errors import HandlerAssertionError as HandlerAssertionError
from plait.errors import HandlerError as HandlerError
from plait.errors import HandlerTypeError as HandlerTypeError
from plait.errors import PlaitError as PlaitError
from plait.errors import PluginLoadWarning as PluginLoadWarning
from plait.errors import SiteAssertionError as SiteAssertionError
from plait.errors import SiteError as SiteError
from plait.errors import SiteRuntimeError as SiteRuntimeError
from plait.errors import SiteTypeError as SiteTypeError
from plait.errors import format_shapes as format_shapes
from plait.hookspecs import PluginInfo as PluginInfo
from plait.hookspecs import hookimpl as hookimpl
from plait.hookspecs import hookspec as hookspec

__all__ = [
    "ConfigError",
    "ControlFlowStep",
    "Distribution",
    "HandlerAssertionError",
    "HandlerError",
    "HandlerTypeError",
    "InferDict",
    "Message",
    "MessageKey",
    "MessageType",
    "Messenger",
    "PlaitError",
    "PlateFrame",
    "PluginInfo",
    "PluginLoadWarning",
    "SiteAssertionError",
    "SiteError",
    "SiteRuntimeError",
    "SiteTypeError",
    "Stash",
    "StashKey",
    "Trace",
    "Unit",
    "__version__",
    "apply_stack",
    "as_distribution",
    "current_stack",
    "default_process_message",
    "deterministic",
    "enable_validation",
    "enable_x64",
    "factor",
    "failed_plugins",
    "format_shapes",
    "get_mask",
    "log_prob_sum",
    "hookimpl",
    "hooks",
    "hookspec",
    "isolated_stack",
    "mutable",
    "param",
    "plate",
    "plate_batch_shape",
    "plate_stack",
    "plugin_manager",
    "plugins",
    "prng_key",
    "register",
    "sample",
    "set_host_device_count",
    "set_platform",
    "site_log_prob",
    "subsample",
    "unregister",
    "validation_enabled",
]

# -- installed subpackages as attributes, imported on first access (as numpyro.infer) ---
_SUBPACKAGES = {
    "control_flow": "plait-control-flow",
    "enum": "plait-enum",
    "gaussian": "plait-gaussian",
    "handlers": "plait-handlers",
    "infer": "plait-infer",
    "kernels": "plait-core",
    "nn": "plait-nn",
    "viz": "plait-viz",
}

if TYPE_CHECKING:
    # What IDEs and mypy see; the lazy __getattr__ below is hidden from them, so a typo
    # such as ``plait.smaple`` stays a type error.
    from plait import control_flow as control_flow
    from plait import enum as enum
    from plait import gaussian as gaussian
    from plait import handlers as handlers
    from plait import infer as infer
    from plait import kernels as kernels
    from plait import nn as nn
    from plait import viz as viz
else:

    def __getattr__(name: str) -> ModuleType:
        # plait.<subpackage>: import an installed subpackage on first access.
        distribution = _SUBPACKAGES.get(name)
        if distribution is None and (
            name.startswith("_")
            or not name.isidentifier()
            or importlib.util.find_spec(f"plait.{name}") is None
        ):
            raise AttributeError(f"module 'plait' has no attribute {name!r}")
        try:
            return importlib.import_module(f"plait.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"plait.{name}" or distribution is None:
                raise  # the subpackage is there, but one of its own imports is missing
            raise AttributeError(
                f"plait.{name} is not installed: it ships in the distribution "
                f"{distribution!r} (pip install {distribution})."
            ) from None

    def __dir__() -> list[str]:
        installed = [
            name for name in _SUBPACKAGES if importlib.util.find_spec(f"plait.{name}") is not None
        ]
        return sorted(set(globals()) | set(installed))
