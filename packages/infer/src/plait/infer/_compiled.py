"""Compiled code reused across calls only when the computation is the same.

``svi.run`` (and ``Predictive``) trace and lower their computation on every call, as
NumPyro's do, so a model always sees its current globals and closures. The compiled
executable, the expensive part, is then looked up by what the computation *is*: the
lowered StableHLO module (closed-over arrays included as constants, source locations
left out), the key JAX's own persistent compilation cache uses, with the input and
output pytree structures. An equal module compiles
to the same program, so reuse can cost speed, never change a result.

A model that needs the concrete values of its array arguments (``int(jnp.max(y))``)
cannot be traced with them as inputs: :func:`needs_concrete_args` recognises JAX's
tracer errors, and the caller then closes over the arguments instead (NumPyro's way),
compiling for those values.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jax

__all__ = ["TRACER_ERRORS", "compile_lowered", "needs_concrete_args"]

TRACER_ERRORS: tuple[type[Exception], ...] = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
)

_MAX_ENTRIES = 32
_lock = threading.Lock()
_compiled: OrderedDict[bytes, Any] = OrderedDict()


def needs_concrete_args(error: BaseException) -> bool:
    """Whether ``error`` says a traced argument was used as a concrete value."""
    return isinstance(error, TRACER_ERRORS)


def compile_lowered(lowered: Any) -> Callable[..., Any]:
    """The compiled form of ``lowered`` (a ``jax.stages.Lowered``), reused when an equal
    module was compiled before.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> first = compile_lowered(jax.jit(lambda x: x + 1).lower(jnp.ones(2)))
        >>> again = compile_lowered(jax.jit(lambda y: y + 1).lower(jnp.zeros(2)))
        >>> first is again
        True
    """
    text = lowered.as_text(debug_info=False)
    trees = f"{lowered.in_tree}|{lowered.out_tree}"
    key = hashlib.sha256((trees + text).encode()).digest()
    with _lock:
        found = _compiled.get(key)
        if found is not None:
            _compiled.move_to_end(key)
            return found  # type: ignore[no-any-return]
    compiled = lowered.compile()
    with _lock:
        _compiled[key] = compiled
        while len(_compiled) > _MAX_ENTRIES:
            _compiled.popitem(last=False)
    return compiled  # type: ignore[no-any-return]
