"""plait-control-flow: ``scan``, a ``lax.scan`` that composes with every plait handler.

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
from plait.control_flow._body import StepResult as StepResult
from plait.control_flow._body import run_step as run_step
from plait.control_flow._cache import CacheInfo as CacheInfo
from plait.control_flow._cache import cache_clear as _cache_clear
from plait.control_flow._cache import cache_info as _cache_info
from plait.control_flow._cache import set_cache_enabled as _set_cache_enabled
from plait.control_flow._forms import acts_inside as acts_inside
from plait.control_flow._forms import body_forms as body_forms
from plait.control_flow._scan import ScanResult as ScanResult
from plait.control_flow._scan import scan as scan
from plait.control_flow._sites import SitePayload as SitePayload
from plait.control_flow._sites import SiteSkeleton as SiteSkeleton
from plait.control_flow._sites import split_trace as split_trace
from plait.control_flow._sites import stacked_sites as stacked_sites
from plait.control_flow._step import ScanContext as ScanContext
from plait.control_flow._step import ScanStep as ScanStep
from plait.control_flow._step import active_context as active_context

__all__ = [
    "acts_inside",
    "active_context",
    "CacheInfo",
    "ScanContext",
    "ScanResult",
    "ScanStep",
    "SitePayload",
    "SiteSkeleton",
    "StepResult",
    "__version__",
    "body_forms",
    "run_step",
    "scan",
    "scan_cache_clear",
    "scan_cache_info",
    "set_scan_cache",
    "split_trace",
    "stacked_sites",
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
    setting. With it off every un-jitted call traces and compiles its loop again.

    Example:
        >>> from plait.control_flow import set_scan_cache
        >>> previous = set_scan_cache(False)
        >>> set_scan_cache(previous)
        False
    """
    return _set_cache_enabled(enabled)
