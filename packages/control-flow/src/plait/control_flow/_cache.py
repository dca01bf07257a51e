"""Compile caching for ``scan`` outside ``jit``: one compiled loop per model structure.

``lax.scan`` called eagerly compiles its body again whenever the body is a new function
object, which a model's inner ``def transition(...)`` is on every call (NumPyro pays
200-300 ms per call for it). Here the loop runs inside a ``jax.jit``-ed function cached on
the loop's *structure*, and every array it reads is passed in as an argument:

* :class:`plait.control_flow._walk.Flattener` walks the body function (code, closure
  cells, defaults, the globals its code names), ``init``, ``xs``, the key and the handlers
  that act inside the body (their data: ``substitute``'s dict, ``replay``'s trace, ...).
  Arrays become arguments (shape and dtype go into the key); scalars, strings, code
  objects, small NumPy arrays and library functions become part of the key.
* On a miss the structure is rebuilt around tracers (functions with new closure cells,
  copied objects with the arrays swapped in) and traced once under ``jax.jit``.
* Anything the walker does not understand (a tracer, an unhashable static, a user module
  attribute that is an array) makes the call uncacheable, and it runs as a plain loop.
  So does a body that needs concrete values of its closure arrays (``float(a)``,
  ``np.asarray(a)``): the first traced call fails, the structure is remembered as
  uncacheable, and the loop runs plainly.

As with ``jax.jit``, Python side effects in the body happen when it is traced, not on
every call.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from plait import Messenger, plate
from plait.control_flow._forms import acts_inside
from plait.control_flow._loop import LoopResult, LoopSpec, run_loop
from plait.control_flow._sites import SiteSkeleton
from plait.control_flow._walk import WRAPPER_ATTRS, Flattener, Node, UncacheableError

__all__ = ["CacheInfo", "cache_clear", "cache_info", "cached_loop", "set_cache_enabled"]

_MAX_ENTRIES = 128
_TRACING_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.UnexpectedTracerError,
)


def _relevant(handler: Messenger[Any, Any]) -> bool:
    """Handlers whose state the body reads: body forms, renames, enclosing plates."""
    kind = type(handler)
    return (
        isinstance(handler, plate)
        or kind.for_control_flow is not Messenger.for_control_flow
        or kind.rename_site is not Messenger.rename_site
        or acts_inside(handler)
    )


_NEUTRAL: Messenger[Any, Any] = Messenger()
"""Stands in for the handlers the body does not read (``trace``, ``seed``, ``mask``, ...)."""


def _view(handler: Messenger[Any, Any]) -> Messenger[Any, Any]:
    """A copy of ``handler`` without the model it wraps and its stack tokens."""
    view = copy.copy(handler)
    for name in WRAPPER_ATTRS:
        view.__dict__.pop(name, None)
    return view


class CacheInfo(NamedTuple):
    """Statistics of the ``scan`` compile cache (see :func:`plait.control_flow.scan_cache_info`).

    Fields:
        hits: calls that reused a compiled loop.
        misses: calls that traced and compiled a new loop.
        uncacheable: calls that ran as a plain ``lax.scan`` (see the module docstring).
        size: compiled loops held now.

    Example:
        >>> CacheInfo(hits=2, misses=1, uncacheable=0, size=1).hits
        2
    """

    hits: int
    misses: int
    uncacheable: int
    size: int


class _Entry:
    def __init__(self, run: Callable[[list[Any]], LoopResult]) -> None:
        self.run = run
        self.skeletons: dict[str, SiteSkeleton] = {}
        self.compiled = False


_UNCACHEABLE = object()
_lock = threading.Lock()
_entries: OrderedDict[Any, _Entry | object] = OrderedDict()
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


def cached_loop(
    f: Callable[[Any, Any], tuple[Any, Any]],
    init: Any,
    xs: Any,
    rng_key: Any,
    spec: LoopSpec,
) -> tuple[LoopResult, dict[str, SiteSkeleton]] | None:
    """Run the loop through the compile cache; ``None`` when the call is uncacheable
    (the caller then runs :func:`run_loop` itself)."""
    if not _enabled[0] or spec.parent is not None:
        return None
    walker = Flattener()
    handlers = tuple(_view(h) if _relevant(h) else _NEUTRAL for h in spec.handled_by)
    try:
        node = walker.visit((f, init, xs, rng_key, handlers))
        key = (spec.name, spec.length, spec.reverse, spec.frames, spec.record, node.key)
        hash(key)
    except (UncacheableError, TypeError, RecursionError):
        _stats["uncacheable"] += 1
        return None
    with _lock:
        entry = _entries.get(key)
        if entry is not None:
            _entries.move_to_end(key)
    if entry is _UNCACHEABLE:
        _stats["uncacheable"] += 1
        return None
    if entry is None:
        entry = _new_entry(node, spec)
        with _lock:
            _entries[key] = entry
            while len(_entries) > _MAX_ENTRIES:
                _entries.popitem(last=False)
    assert isinstance(entry, _Entry)
    if entry.compiled:
        _stats["hits"] += 1
        return entry.run(walker.leaves), entry.skeletons
    try:
        result = entry.run(walker.leaves)
    except _TRACING_ERRORS:
        with _lock:
            _entries[key] = _UNCACHEABLE
        _stats["uncacheable"] += 1
        return None
    except BaseException:
        with _lock:
            _entries.pop(key, None)
        raise
    entry.compiled = True
    _stats["misses"] += 1
    return result, entry.skeletons


def _new_entry(node: Node, spec: LoopSpec) -> _Entry:
    rebuild = node.rebuild
    original = node.obj
    spec = spec._replace(handled_by=())

    def loop(leaves: list[Any]) -> LoopResult:
        objects = original if rebuild is None else rebuild(leaves, {})
        f, init, xs, rng_key, handled_by = objects
        return run_loop(f, init, xs, rng_key, spec._replace(handled_by=handled_by), entry.skeletons)

    entry = _Entry(jax.jit(loop))
    return entry
