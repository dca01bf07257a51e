"""A hashable key that says what a traced computation *is*: the structure of its jaxpr.

Two jaxprs get equal keys only if they compute the same function of their inputs: the
same equations (primitive, parameters, which earlier values they read) in the same order,
with the same abstract values, literals and constants of inner jaxprs by value. Python
objects in parameters that cannot be compared by value (functions, foreign objects) are
compared by identity, which can only make two equal computations look different (a cache
miss), never the reverse. What cannot be keyed at all raises :class:`UnkeyableError`.

The top-level constants of a :class:`~jax.extend.core.ClosedJaxpr` are not in the key
(only their abstract values): the caller passes them as arguments.
"""

from __future__ import annotations

import enum
import threading
import types
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import jax
import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal

__all__ = ["UnkeyableError", "aval_key", "closed_jaxpr_key"]

_MAX_CONST_BYTES = 1 << 16
"""Constants of inner jaxprs are keyed by value up to this size; larger ones make the
computation unkeyable (it then runs uncached)."""

_SCALARS = (bool, int, float, complex, str, bytes, type(None))

_DIFFERENTIATION_ONLY = {
    "custom_jvp_call": frozenset({"jvp_jaxpr_fun", "jvp_jaxpr_thunk"}),
    "custom_vjp_call": frozenset({"fwd_jaxpr_thunk", "bwd", "fwd", "out_trees"}),
}
"""Parameters that only differentiation reads. A keyed computation is only ever evaluated
(the cache runs it on concrete arrays), so they are left out: a model's own
``custom_jvp`` function, made anew on every call, then still hits."""

_CALLABLE_WRAPPERS = {"jax._src.custom_batching.ClosedRule": "rule"}
"""JAX objects made anew on every trace around a function that alone decides what they do
(``custom_vmap``'s rule): keyed by that function (qualified type name -> its attribute)."""


class UnkeyableError(Exception):
    """The computation holds something that cannot be keyed safely."""


class _Ident:
    """Compares by identity and holds the object, so its id is not reused meanwhile."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Ident) and other.obj is self.obj


def aval_key(aval: Any) -> Hashable:
    """The abstract value (shape, dtype, weak type) of an array or aval, as a key.

    Example:
        >>> import jax.numpy as jnp
        >>> aval_key(jnp.zeros((2, 3)))
        ('shaped', (2, 3), 'float32', False)
    """
    shape = getattr(aval, "shape", None)
    dtype = getattr(aval, "dtype", None)
    if shape is None or dtype is None:
        return ("aval", str(aval))
    return ("shaped", tuple(shape), str(dtype), bool(getattr(aval, "weak_type", False)))


def _array_key(value: Any) -> Hashable:
    array = np.asarray(value)
    if array.dtype == object or array.nbytes > _MAX_CONST_BYTES:
        raise UnkeyableError
    return ("array", array.shape, array.dtype.str, array.tobytes())


def _hashes_by_identity(value: object) -> bool:
    hasher: object = type(value).__hash__
    return hasher is object.__hash__


def _value_key(value: Any) -> Hashable:
    """A key for a parameter or literal value (see the module docstring)."""
    if isinstance(value, _SCALARS):
        if isinstance(value, float | complex):
            return (type(value), repr(value))  # distinguishes -0.0, nan payloads aside
        return (type(value), value)
    if isinstance(value, Jaxpr | ClosedJaxpr):
        return _inner_key(value)
    if isinstance(value, tuple | list):
        return (type(value).__name__, tuple(_value_key(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), _value_key(v)) for k, v in value.items())))
    if isinstance(value, np.generic):
        return ("np", value.dtype.str, value.tobytes())
    if isinstance(value, np.ndarray | jax.Array):
        if isinstance(value, jax.core.Tracer):
            raise UnkeyableError
        return _array_key(value)
    if isinstance(value, np.dtype):
        return ("dtype", value.str)
    if isinstance(value, type):
        return _Ident(value)
    if isinstance(value, enum.Enum):
        return ("enum", _Ident(type(value)), value.name)
    if isinstance(value, types.FunctionType | types.MethodType | types.BuiltinFunctionType):
        return _Ident(value)
    kind = type(value)
    wrapped = _CALLABLE_WRAPPERS.get(f"{kind.__module__}.{kind.__qualname__}")
    if wrapped is not None and hasattr(value, wrapped):
        return ("wrapper", _Ident(kind), _value_key(getattr(value, wrapped)))
    if callable(value) and _hashes_by_identity(value):
        return _Ident(value)
    try:
        hash(value)
    except TypeError:
        raise UnkeyableError from None
    # A hashable value object (a sharding, a named tuple of options, a dtype-like): equal
    # by its own equality, and of the same type.
    return ("value", _Ident(type(value)), value)


_INNER_KEYS: OrderedDict[int, tuple[Jaxpr | ClosedJaxpr, Hashable]] = OrderedDict()
"""Keys of inner jaxprs by identity. JAX reuses the same (immutable) jaxpr object for a
function it has traced before with the same abstract values (most of ``jax.numpy`` and of
``numpyro.distributions`` are ``jit``-ed helpers), so each is keyed once; the entry holds
the object, so its id cannot be reused while the key is remembered."""
_MAX_INNER_KEYS = 4096


_INNER_LOCK = threading.Lock()


def _inner_key(jaxpr: Jaxpr | ClosedJaxpr) -> Hashable:
    with _INNER_LOCK:
        found = _INNER_KEYS.get(id(jaxpr))
        if found is not None and found[0] is jaxpr:
            _INNER_KEYS.move_to_end(id(jaxpr))
            return found[1]
    if isinstance(jaxpr, ClosedJaxpr):
        key: Hashable = (
            "closed",
            _jaxpr_key(jaxpr.jaxpr),
            tuple(_array_key(c) for c in jaxpr.consts),
        )
    else:
        key = _jaxpr_key(jaxpr)
    with _INNER_LOCK:
        _INNER_KEYS[id(jaxpr)] = (jaxpr, key)
        while len(_INNER_KEYS) > _MAX_INNER_KEYS:
            _INNER_KEYS.popitem(last=False)
    return key


def _jaxpr_key(jaxpr: Jaxpr) -> Hashable:
    numbers: dict[Any, int] = {}

    def define(var: Any) -> Hashable:
        numbers[var] = len(numbers)
        return aval_key(var.aval)

    def read(var: Any) -> Hashable:
        if isinstance(var, Literal):
            return ("literal", _value_key(var.val), aval_key(var.aval))
        number = numbers.get(var)
        if number is None:
            raise UnkeyableError  # a free variable: not a well-formed jaxpr
        return number

    head = (
        tuple(define(v) for v in jaxpr.constvars),
        tuple(define(v) for v in jaxpr.invars),
    )
    eqns = []
    for eqn in jaxpr.eqns:
        ins = tuple(read(v) for v in eqn.invars)
        skip = _DIFFERENTIATION_ONLY.get(eqn.primitive.name, frozenset())
        params = tuple(
            sorted((k, _value_key(v)) for k, v in eqn.params.items() if k not in skip)
        )
        outs = tuple(define(v) for v in eqn.outvars)
        eqns.append((eqn.primitive.name, ins, params, outs, repr(sorted(map(repr, eqn.effects)))))
    return ("jaxpr", head, tuple(eqns), tuple(read(v) for v in jaxpr.outvars))


def closed_jaxpr_key(closed: ClosedJaxpr) -> Hashable:
    """The key of ``closed``: its jaxpr's structure and its constants' abstract values.

    Raises:
        UnkeyableError: the jaxpr holds a value that cannot be keyed safely.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> k1 = closed_jaxpr_key(jax.make_jaxpr(lambda x: jnp.sin(x) + 1.0)(0.0))
        >>> k2 = closed_jaxpr_key(jax.make_jaxpr(lambda y: jnp.sin(y) + 1.0)(0.0))
        >>> k3 = closed_jaxpr_key(jax.make_jaxpr(lambda x: jnp.sin(x) + 2.0)(0.0))
        >>> k1 == k2, k1 == k3
        (True, False)
    """
    return (_jaxpr_key(closed.jaxpr), tuple(aval_key(c) for c in closed.consts))
