"""Walking Python objects into a structural key, their array arguments, and a recipe to
rebuild them around other arrays (the compile cache of ``scan``, see ``_cache.py``).

:class:`Flattener` visits the body function (code object, closure cells, defaults, the
globals its code names), ``init``, ``xs``, the key and the handlers acting inside the body.
Arrays become arguments (their shape and dtype go into the key); Python scalars, strings,
code objects, small NumPy arrays and library functions become part of the key;
containers, pytrees, functions, plain objects and messages are walked. Anything it cannot
understand raises :class:`UncacheableError`.
"""

from __future__ import annotations

import copy
import functools
import types
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from plait import Message, Messenger, PlateFrame, Stash, StashKey, plate

__all__ = ["WRAPPER_ATTRS", "Flattener", "Node", "UncacheableError"]

_STANDARD = frozenset(
    {
        "jax",
        "jaxlib",
        "numpy",
        "scipy",
        "builtins",
        "functools",
        "operator",
        "math",
        "typing",
        "abc",
        "collections",
        "contextlib",
        "contextvars",
        "types",
        "warnings",
    }
)
_LIBRARIES = _STANDARD | {"numpyro", "funsor", "optax", "equinox", "flax", "blackjax", "plait"}
"""Packages whose module-level functions (no closure, no defaults) are keyed by identity."""
_OPAQUE = _STANDARD | {"threading"}
"""Packages whose objects (other than pytrees) are keyed by identity, not walked."""
_MAX_NODES = 20_000
_MAX_NUMPY_BYTES = 1 << 20
_MAX_ENTRIES = 128
WRAPPER_ATTRS = frozenset(
    {
        "fn",
        "_tokens",
        "__wrapped__",
        "__module__",
        "__name__",
        "__qualname__",
        "__doc__",
        "__annotations__",
        "__type_params__",
        "__dict__",
    }
)
_MESSAGE_FIELDS = (
    "type",
    "name",
    "fn",
    "args",
    "kwargs",
    "value",
    "scale",
    "is_observed",
    "intermediates",
    "cond_indep_stack",
    "infer",
    "mask",
    "stop",
    "done",
)


class UncacheableError(Exception):
    pass


class _Ident:
    """Hashes and compares by identity; holds the object so its id is not reused."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Ident) and other.obj is self.obj


def _is_library(module: object, roots: frozenset[str] = _LIBRARIES) -> bool:
    return isinstance(module, str) and module.partition(".")[0] in roots


def _attributes(obj: Any) -> dict[str, Any] | None:
    """An object's instance attributes (``__dict__`` and ``__slots__``); ``None`` if it
    has neither."""
    attrs: dict[str, Any] = dict(vars(obj)) if hasattr(obj, "__dict__") else {}
    slotted = False
    for klass in type(obj).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            slotted = True
            if hasattr(obj, name):
                attrs[name] = getattr(obj, name)
    return attrs if (attrs or slotted or hasattr(obj, "__dict__")) else None


@functools.lru_cache(maxsize=4096)
def _global_names(code: types.CodeType) -> tuple[str, ...]:
    """Names a code object (and the functions defined in it) may read as globals."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.update(_global_names(const))
    return tuple(sorted(names))


# A rebuild function takes the arguments (leaves) and the shared-object memo.
_Rebuild = Callable[[list[Any], dict[int, Any]], Any]


class Node(NamedTuple):
    key: Any
    rebuild: _Rebuild | None  # None: the object itself (nothing dynamic below it)
    obj: Any


class Flattener:
    """Walks Python objects into (hashable key, array arguments, rebuild recipe)."""

    def __init__(self) -> None:
        self.leaves: list[Any] = []
        # id -> (node number, "visiting" | "pure" | "impure"); objects kept alive meanwhile
        self.state: dict[int, tuple[int, str]] = {}
        self.keep: list[Any] = []
        self.early: set[int] = set()  # nodes whose rebuild registers itself before children
        self.impure_refs = 0
        self.count = 0

    # -- entry points ------------------------------------------------------------------
    def visit(self, obj: Any, static_only: bool = False) -> Node:
        self.count += 1
        if self.count > _MAX_NODES:
            raise UncacheableError
        kind = type(obj)
        if obj is None or obj is Ellipsis or kind in (bool, int, str, bytes):
            return Node((kind, obj), None, obj)
        if kind in (float, complex) or isinstance(obj, np.generic):
            return Node((kind, repr(obj)), None, obj)
        if isinstance(obj, jax.core.Tracer):
            raise UncacheableError
        if isinstance(obj, jax.Array):
            if static_only:
                raise UncacheableError
            i = len(self.leaves)
            self.leaves.append(obj)
            key = ("array", obj.shape, obj.dtype, getattr(obj, "weak_type", False))
            return Node(key, lambda leaves, memo: leaves[i], None)
        if isinstance(obj, np.ndarray):
            if obj.dtype == object:
                raise UncacheableError
            if obj.nbytes <= _MAX_NUMPY_BYTES or static_only:
                return Node(("numpy", obj.shape, obj.dtype.str, obj.tobytes()), None, obj)
            # a large constant: passed as an argument (numpy calls on it then fall back)
            return self.visit(jax.numpy.asarray(obj))
        if isinstance(obj, PlateFrame):
            return Node(obj, None, obj)
        if isinstance(obj, StashKey | types.ModuleType | type):
            return Node(_Ident(obj), None, obj)
        found = self.state.get(id(obj))
        if found is not None:
            n, status = found
            if status == "pure":
                return Node(("ref", n), None, obj)
            if status == "visiting" and n not in self.early:
                raise UncacheableError  # a cycle through a container
            self.impure_refs += 1
            return Node(("ref", n), lambda leaves, memo: memo[n], None)
        n = len(self.state)
        self.state[id(obj)] = (n, "visiting")
        self.keep.append(obj)
        before = (len(self.leaves), self.impure_refs)
        key, rebuild = self._compound(obj, n, static_only)
        pure = (len(self.leaves), self.impure_refs) == before
        self.state[id(obj)] = (n, "pure" if pure else "impure")
        return Node(key, None if pure else rebuild, obj)

    # -- compound objects ----------------------------------------------------------------
    def _children(self, items: list[Any], static_only: bool) -> tuple[tuple[Any, ...], list[Node]]:
        nodes = [self.visit(item, static_only) for item in items]
        return tuple(node.key for node in nodes), nodes

    def _compound(self, obj: Any, n: int, static_only: bool) -> tuple[Any, _Rebuild]:
        kind = type(obj)
        if kind is tuple or (isinstance(obj, tuple) and hasattr(obj, "_fields")):
            keys, nodes = self._children(list(obj), static_only)
            make = tuple if kind is tuple else lambda items: kind(*items)
            return ("tuple", _Ident(kind), keys), _rebuilder(n, nodes, make)
        if kind is list:
            keys, nodes = self._children(obj, static_only)
            return ("list", keys), _rebuilder(n, nodes, list)
        if kind in (dict, OrderedDict, Stash):
            names = [self._static_key(k) for k in obj]
            keys, nodes = self._children(list(obj.values()), static_only)
            dict_keys = list(obj)
            return ("dict", _Ident(kind), tuple(names), keys), _rebuilder(
                n, nodes, lambda values: kind(zip(dict_keys, values, strict=True))
            )
        if kind in (set, frozenset):
            return ("set", kind, frozenset(self._static_key(k) for k in obj)), _identity(obj)
        if isinstance(obj, Message):
            return self._message(obj, n, static_only)
        if isinstance(obj, Messenger):
            if isinstance(obj, plate):
                return ("plate", obj.name, obj.subsample_size, obj.dim), _identity(obj)
            return self._object(obj, n, static_only, skip=frozenset({"_tokens"}))
        if isinstance(obj, types.FunctionType):
            return self._function(obj, n, static_only)
        if isinstance(obj, functools.partial):
            keys, nodes = self._children([obj.func, obj.args, obj.keywords], static_only)
            return ("partial", keys), _rebuilder(
                n, nodes, lambda p: functools.partial(p[0], *p[1], **p[2])
            )
        if isinstance(obj, types.MethodType):
            keys, nodes = self._children([obj.__func__, obj.__self__], static_only)
            return ("method", keys), _rebuilder(n, nodes, lambda p: types.MethodType(p[0], p[1]))
        children, treedef = jax.tree_util.tree_flatten(obj, is_leaf=lambda x: x is not obj)
        if not (len(children) == 1 and children[0] is obj):
            keys, nodes = self._children(children, static_only)
            return ("pytree", treedef, keys), _rebuilder(
                n, nodes, lambda items: jax.tree_util.tree_unflatten(treedef, items)
            )
        if _is_library(getattr(kind, "__module__", None), _OPAQUE):
            return ("object", _Ident(obj)), _identity(obj)
        return self._object(obj, n, static_only, skip=frozenset())

    def _static_key(self, key: Any) -> Any:
        node = self.visit(key, static_only=True)
        return node.key

    def _object(
        self, obj: Any, n: int, static_only: bool, skip: frozenset[str]
    ) -> tuple[Any, _Rebuild]:
        found = _attributes(obj)
        if found is None:  # no Python-visible state: a builtin-like object
            return ("object", _Ident(obj)), _identity(obj)
        self.early.add(n)
        attrs = {k: v for k, v in found.items() if k not in skip}
        names = tuple(attrs)
        keys, nodes = self._children(list(attrs.values()), static_only)

        def rebuild(leaves: list[Any], memo: dict[int, Any]) -> Any:
            new = copy.copy(obj)
            memo[n] = new
            for name, node in zip(names, nodes, strict=True):
                if node.rebuild is not None:
                    object.__setattr__(new, name, node.rebuild(leaves, memo))
            return new

        return ("obj", _Ident(type(obj)), names, keys), rebuild

    def _message(self, msg: Message, n: int, static_only: bool) -> tuple[Any, _Rebuild]:
        values = [getattr(msg, name) for name in _MESSAGE_FIELDS]
        keys, nodes = self._children(values, static_only)
        return ("message", keys), _rebuilder(
            n, nodes, lambda items: Message(**dict(zip(_MESSAGE_FIELDS, items, strict=True)))
        )

    def _function(self, fn: types.FunctionType, n: int, static_only: bool) -> tuple[Any, _Rebuild]:
        library = _is_library(fn.__module__)
        cells = fn.__closure__ or ()
        if library and not cells and not fn.__defaults__ and not fn.__kwdefaults__:
            return ("function", _Ident(fn)), _identity(fn)
        self.early.add(n)
        contents = []
        for cell in cells:
            try:
                contents.append(cell.cell_contents)
            except ValueError:  # an empty cell (a name assigned later)
                contents.append(_EMPTY)
        closure_keys, closure_nodes = self._children(contents, static_only)
        defaults_keys, defaults_nodes = self._children(
            [fn.__defaults__, fn.__kwdefaults__], static_only
        )
        global_names: list[str] = []
        global_nodes: list[Node] = []
        global_keys: list[Any] = []
        if not library:
            namespace = fn.__globals__
            for name in _global_names(fn.__code__):
                if name not in namespace:
                    continue
                value = namespace[name]
                node = self.visit(value, static_only)
                if isinstance(value, types.ModuleType) and not _is_library(value.__name__):
                    attrs = tuple(a for a in _global_names(fn.__code__) if a in vars(value))
                    node = Node(
                        (node.key, tuple(self._static_key(getattr(value, a)) for a in attrs)),
                        None,
                        value,
                    )
                global_names.append(name)
                global_nodes.append(node)
                global_keys.append(node.key)
        key = (
            "function",
            fn.__code__,
            closure_keys,
            defaults_keys,
            tuple(global_names),
            tuple(global_keys),
        )

        def rebuild(leaves: list[Any], memo: dict[int, Any]) -> Any:
            new_cells = tuple(types.CellType() for _ in cells)
            namespace = fn.__globals__
            if any(node.rebuild is not None for node in global_nodes):
                namespace = dict(namespace)
            new = types.FunctionType(fn.__code__, namespace, fn.__name__, None, new_cells)
            memo[n] = new
            for cell, node in zip(new_cells, closure_nodes, strict=True):
                value = _materialise(node, leaves, memo)
                if value is not _EMPTY:
                    cell.cell_contents = value
            new.__defaults__ = _materialise(defaults_nodes[0], leaves, memo)
            new.__kwdefaults__ = _materialise(defaults_nodes[1], leaves, memo)
            if namespace is not fn.__globals__:
                for name, node in zip(global_names, global_nodes, strict=True):
                    if node.rebuild is not None:
                        namespace[name] = node.rebuild(leaves, memo)
            new.__dict__.update(fn.__dict__)
            new.__qualname__ = fn.__qualname__
            return new

        return key, rebuild


_EMPTY = object()


def _materialise(node: Node, leaves: list[Any], memo: dict[int, Any]) -> Any:
    return node.obj if node.rebuild is None else node.rebuild(leaves, memo)


def _identity(obj: Any) -> _Rebuild:
    return lambda leaves, memo: obj


def _rebuilder(n: int, nodes: list[Node], make: Callable[[list[Any]], Any]) -> _Rebuild:
    def rebuild(leaves: list[Any], memo: dict[int, Any]) -> Any:
        new = make([_materialise(node, leaves, memo) for node in nodes])
        memo[n] = new
        return new

    return rebuild
