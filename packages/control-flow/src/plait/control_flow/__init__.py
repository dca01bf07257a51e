"""plait-control-flow: ``scan``, a ``lax.scan`` that composes with every plait handler.

Plugins that act on a scan (enumeration, Kalman collapse, a third party's marginaliser)
use the contract in :mod:`plait.control_flow.plugin_api`.

Example:
    >>> import jax.numpy as jnp
    >>> import numpyro.distributions as dist
    >>> from plait import sample
    >>> from plait.control_flow import scan
    >>> from plait.handlers import seed, trace
    >>> def walk(T: int) -> None:
    ...     def step(x, _):
    ...         x = sample("x", dist.Normal(x, 1.0))
    ...         return x, None
    ...     scan(step, jnp.zeros(()), None, length=T)
    >>> trace(seed(walk, rng_seed=0)).get_trace(5)["x"].value.shape
    (5,)
"""

from plait.control_flow.__about__ import __version__ as __version__
from plait.control_flow._cache import CacheInfo as CacheInfo
from plait.control_flow._cache import cache_clear as _cache_clear
from plait.control_flow._cache import cache_info as _cache_info
from plait.control_flow._cache import set_cache_enabled as _set_cache_enabled
from plait.control_flow._cond import cond as cond
from plait.control_flow._cond import switch as switch
from plait.control_flow._errors import ControlFlowError as ControlFlowError
from plait.control_flow._errors import ControlFlowIndexError as ControlFlowIndexError
from plait.control_flow._errors import ControlFlowTypeError as ControlFlowTypeError
from plait.control_flow._scan import scan as scan
from plait.control_flow._while import fori_loop as fori_loop
from plait.control_flow._while import while_loop as while_loop

__all__ = [
    "CacheInfo",
    "ControlFlowError",
    "ControlFlowIndexError",
    "ControlFlowTypeError",
    "__version__",
    "cond",
    "fori_loop",
    "scan",
    "scan_cache_clear",
    "scan_cache_info",
    "set_scan_cache",
    "switch",
    "while_loop",
]


def scan_cache_info() -> CacheInfo:
    """Statistics of the compile cache that un-jitted ``scan`` calls go through.

    Example:
        >>> from plait.control_flow import scan_cache_info
        >>> info = scan_cache_info()
        >>> info.hits >= 0 and info.size >= 0
        True
    """
    return _cache_info()


def scan_cache_clear() -> None:
    """Drop every compiled loop and reset the statistics.

    Example:
        >>> from plait.control_flow import scan_cache_clear, scan_cache_info
        >>> scan_cache_clear()
        >>> scan_cache_info().size
        0
    """
    _cache_clear()


def set_scan_cache(enabled: bool) -> bool:
    """Turn the compile cache of un-jitted ``scan`` calls on or off; returns the previous
    setting. With it off every un-jitted call compiles its loop again.

    Example:
        >>> from plait.control_flow import set_scan_cache
        >>> previous = set_scan_cache(False)
        >>> set_scan_cache(previous)
        False
    """
    return _set_cache_enabled(enabled)
