"""The compile cache of ``scan`` outside ``jit``: keyed on what the loop computes.

``lax.scan`` called eagerly compiles its body again whenever the body is a new function
object, which a model's inner ``def transition(...)`` is on every call (NumPyro pays
200-300 ms per call for it). Here every un-jitted call still traces its step into a jaxpr
(cheap: Python, no compilation), and the compiled loop is looked up by that jaxpr's
structure (:func:`plait.control_flow._jaxpr_key.closed_jaxpr_key`) and the loop's shape;
the arrays the body captured are the jaxpr's constants, passed in as arguments. So a hit
runs exactly the computation this call traced: whatever the body read (globals, closures,
attributes, properties, mutated NumPy arrays) is in the trace of *this* call, and the cache
can never serve a stale result. Python side effects in the body happen on every call, as
they would without the cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax

from plait.control_flow._jaxpr_key import UnkeyableError, closed_jaxpr_key

__all__ = ["CacheInfo", "cache_clear", "cache_info", "run_cached", "set_cache_enabled"]

_MAX_ENTRIES = 128


class CacheInfo(NamedTuple):
    """Statistics of the ``scan`` compile cache (see :func:`plait.control_flow.scan_cache_info`).

    Fields:
        hits: calls that reused a compiled loop.
        misses: calls that compiled a new loop.
        uncacheable: un-jitted calls whose loop could not be keyed and ran uncached.
        size: compiled loops held now.

    Example:
        >>> CacheInfo(hits=2, misses=1, uncacheable=0, size=1).hits
        2
    """

    hits: int
    misses: int
    uncacheable: int
    size: int


_lock = threading.Lock()
_entries: OrderedDict[Hashable, Callable[..., Any]] = OrderedDict()
_stats = {"hits": 0, "misses": 0, "uncacheable": 0}
_enabled = [True]


def cache_info() -> CacheInfo:
    """Hits, misses, uncacheable calls and size of the ``scan`` compile cache."""
    return CacheInfo(_stats["hits"], _stats["misses"], _stats["uncacheable"], len(_entries))


def cache_clear() -> None:
    """Drop every compiled loop and reset the statistics."""
    with _lock:
        _entries.clear()
        for name in _stats:
            _stats[name] = 0


def set_cache_enabled(enabled: bool) -> bool:
    """Turn compile caching on or off; returns the previous setting."""
    previous = _enabled[0]
    _enabled[0] = bool(enabled)
    return previous


def _is_concrete(args: Any) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(args))


def run_cached(
    closed: Any,
    static: Hashable,
    execute: Callable[..., Any],
    args: tuple[Any, ...],
) -> Any:
    """``execute(closed.consts, *args)``, compiled once per distinct computation.

    Args:
        closed: the traced step (a ``ClosedJaxpr``); its constants are passed in.
        static: what else ``execute`` depends on (hashable; the loop's length, ...).
        execute: ``(consts, *args) -> outputs``, pure given ``closed`` and ``static``.
        args: the array arguments.

    Under a transformation (the caller's ``jit``, ``grad``, ``vmap``: tracers among the
    arguments or constants) or with the cache off, ``execute`` is simply called, inline.
    """
    consts = list(closed.consts)
    if not _enabled[0] or not _is_concrete((consts, args)):
        return execute(consts, *args)
    try:
        key = (static, closed_jaxpr_key(closed))
        hash(key)
    except (UnkeyableError, TypeError, RecursionError):
        _stats["uncacheable"] += 1
        return execute(consts, *args)
    with _lock:
        compiled = _entries.get(key)
        if compiled is not None:
            _entries.move_to_end(key)
    if compiled is not None:
        _stats["hits"] += 1
        return compiled(consts, *args)
    compiled = jax.jit(execute)
    result = compiled(consts, *args)
    with _lock:
        _entries[key] = compiled
        while len(_entries) > _MAX_ENTRIES:
            _entries.popitem(last=False)
    _stats["misses"] += 1
    return result
