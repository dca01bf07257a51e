"""The message that every primitive sends through the handler stack.

One typed definition, documented field by field, replaces NumPyro's ``dict[str, Any]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Generic,
    Literal,
    TypeAlias,
    TypedDict,
    TypeVar,
    overload,
)

if TYPE_CHECKING:
    from plait._messenger import Messenger

__all__ = [
    "NUMPYRO_KEYS",
    "InferDict",
    "Message",
    "MessageKey",
    "MessageType",
    "PlateFrame",
    "Stash",
    "StashKey",
    "Trace",
]

T = TypeVar("T")

MessageType: TypeAlias = Literal[
    "sample",
    "param",
    "plate",
    "deterministic",
    "prng_key",
    "subsample",
    "mutable",
    "inspect",
    "control_flow",
]
"""The message types core sends. Plugins may send others (any string is accepted)."""

MessageKey: TypeAlias = Literal[
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
]
"""The keys of a NumPyro message dict that a :class:`Message` answers (``msg["value"]``)."""

NUMPYRO_KEYS: Final[tuple[MessageKey, ...]] = (
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
"""Every :data:`MessageKey`, in NumPyro's order: what ``dict(msg)`` holds."""

_KEY_SET: Final = frozenset(NUMPYRO_KEYS)


class InferDict(TypedDict, total=False):
    """Public inference options of a site (``sample(..., infer={...})``).

    Keys:
        enumerate: ``"parallel"`` to sum the site out by enumeration (plait-enum).
        expand: with ``enumerate``, enumerate the full batch instead of the support.
        num_samples: reserved for Monte Carlo enumeration (not supported).
        is_auxiliary: set by :func:`plait.factor`; the site carries a log factor only.
        kl: ``"analytic"`` to use a closed-form KL in ELBOs.
        was_observed: set by ``uncondition`` on sites that had an observation.
        obs: the observation ``uncondition`` removed.
        block_plates: names of enclosing plates that must not broadcast this site.
        contraction: strategy for an enumerated ``scan`` (``"auto"``, ``"sequential"``,
            ``"tree"``, ``"associative"``).
    """

    enumerate: Literal["parallel", "sequential"] | None
    expand: bool
    num_samples: int
    is_auxiliary: bool
    kl: str
    was_observed: bool
    obs: Any
    block_plates: list[str]
    contraction: Literal["auto", "sequential", "tree", "associative"]


class StashKey(Generic[T]):
    """A typed key for plugin-private per-site data kept in :attr:`Message.stash`.

    Create one at module level, then read and write ``msg.stash[KEY]``::

        >>> CURRENT_STEP = StashKey[int]()
        >>> msg = Message(type="sample", name="x")
        >>> msg.stash[CURRENT_STEP] = 3
        >>> msg.stash[CURRENT_STEP]
        3
    """

    __slots__ = ()


class Stash(dict[StashKey[Any], Any]):
    """A dict from :class:`StashKey` to values, typed per key."""

    def __getitem__(self, key: StashKey[T]) -> T:  # type: ignore[override]
        value: T = super().__getitem__(key)
        return value

    def get(self, key: StashKey[T], default: T | None = None) -> T | None:  # type: ignore[override]
        value: T | None = super().get(key, default)
        return value


@dataclass(frozen=True, slots=True)
class PlateFrame:
    """One enclosing plate of a site: its ``name``, batch ``dim`` (negative) and ``size``.

    ``size`` is the subsample size when the plate subsamples. As NumPyro's
    ``CondIndepStackFrame`` (a named tuple), a frame also unpacks and indexes as
    ``(name, dim, size)``.

    Example:
        >>> name, dim, size = PlateFrame("data", -1, 100)
        >>> (name, dim, size) == tuple(PlateFrame("data", -1, 100))
        True
    """

    name: str
    dim: int
    size: int

    def __iter__(self) -> Iterator[str | int]:
        return iter((self.name, self.dim, self.size))

    def __len__(self) -> int:
        return 3

    @overload
    def __getitem__(self, index: Literal[0]) -> str: ...
    @overload
    def __getitem__(self, index: Literal[1, 2]) -> int: ...
    @overload
    def __getitem__(self, index: int) -> str | int: ...
    def __getitem__(self, index: int) -> str | int:
        return (self.name, self.dim, self.size)[index]


@dataclass(slots=True, kw_only=True, eq=False)
class Message:
    """What a primitive sends through the handler stack.

    Fields:
        type: the primitive (:data:`MessageType`, or a plugin's own type).
        name: the site name; ``None`` for nameless messages (``prng_key``, ``subsample``,
            ``inspect``).
        fn: ``sample``: the distribution; ``param``/``mutable``: the init function;
            ``plate``: the subsample-index function; ``control_flow``: the runner.
            Handlers may replace it (``plate`` expands it, ``mask`` masks it).
        args: positional arguments for ``fn`` in the default action.
        kwargs: keyword arguments for ``fn``: ``sample``: ``rng_key``, ``sample_shape``;
            ``param``: ``constraint``, ``event_dim``; ``plate``/``prng_key``: ``rng_key``;
            ``subsample``: ``event_dim``; ``control_flow``: ``rng_key`` and the runner's own.
        value: the result; when a handler sets it, the default action is skipped.
        scale: ``None`` or a multiplier of the site's log probability (plates and ``scale``).
        is_observed: the value is an observation (``obs``, ``condition``).
        intermediates: values the distribution returned beside the sample, for
            ``log_prob(value, intermediates)``.
        cond_indep_stack: the enclosing plates, innermost first.
        infer: public inference options, see :class:`InferDict`.
        mask: for ``inspect`` messages, the accumulated mask of ``get_mask``.
        stop: set by a handler to stop outer handlers from seeing the message.
        done: the site got its final value (set by enumeration).
        stash: plugin-private data keyed by :class:`StashKey`; never user-facing.
        handled_by: the handlers whose ``process_message`` ran, outermost first (set by
            ``apply_stack``). Control-flow plugins read it to install the body forms of the
            handlers that act inside a loop (:meth:`Messenger.for_control_flow`).

    Read as a NumPyro message dict: ``msg["value"]``, ``msg.get("infer")``, ``"fn" in
    msg``, ``dict(msg)``, with NumPyro's keys (:data:`MessageKey`; typed per key), so
    trace-reading code ports unchanged. The attributes are the primary API; the dict view
    is read-only, and holds only NumPyro's keys (``stash`` and ``handled_by`` are
    plait's). Keys NumPyro adds later (``"log_prob"``, computed by its ELBOs) are not in
    a plait message: compute ``msg.fn.log_prob(msg.value)``.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import seed, trace
        >>> site = trace(seed(lambda: sample("x", dist.Normal(0.0, 1.0)), 0)).get_trace()["x"]
        >>> site["type"], site["value"] is site.value, site.get("infer"), "log_prob" in site
        ('sample', True, {}, False)
    """

    type: str
    name: str | None = None
    fn: Any = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    value: Any = None
    scale: Any = None
    is_observed: bool = False
    intermediates: list[Any] = field(default_factory=list)
    cond_indep_stack: list[PlateFrame] = field(default_factory=list)
    infer: InferDict = field(default_factory=lambda: InferDict())
    mask: Any = None
    stop: bool = False
    done: bool = False
    stash: Stash = field(default_factory=Stash)
    handled_by: tuple[Messenger[Any, Any], ...] = ()

    def copy(self) -> Message:
        """A shallow copy, as ``trace`` records (later in-place edits are not seen)."""
        new = object.__new__(Message)
        for name in _FIELDS:
            object.__setattr__(new, name, getattr(self, name))
        return new

    # -- read access as a NumPyro message dict -------------------------------------------
    @overload
    def __getitem__(self, key: Literal["type"]) -> str: ...
    @overload
    def __getitem__(self, key: Literal["name"]) -> str | None: ...
    @overload
    def __getitem__(self, key: Literal["args"]) -> tuple[Any, ...]: ...
    @overload
    def __getitem__(self, key: Literal["kwargs"]) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, key: Literal["is_observed", "stop", "done"]) -> bool: ...
    @overload
    def __getitem__(self, key: Literal["intermediates"]) -> list[Any]: ...
    @overload
    def __getitem__(self, key: Literal["cond_indep_stack"]) -> list[PlateFrame]: ...
    @overload
    def __getitem__(self, key: Literal["infer"]) -> InferDict: ...
    @overload
    def __getitem__(self, key: Literal["fn", "value", "scale", "mask"]) -> Any: ...
    def __getitem__(self, key: str) -> Any:
        """``msg[key]``: the field NumPyro's message dict holds under ``key``."""
        if key not in _KEY_SET:
            raise KeyError(_unknown_key(key))
        return getattr(self, key)

    @overload
    def get(self, key: Literal["type"], default: object = None) -> str: ...
    @overload
    def get(self, key: Literal["name"], default: object = None) -> str | None: ...
    @overload
    def get(self, key: Literal["args"], default: object = None) -> tuple[Any, ...]: ...
    @overload
    def get(self, key: Literal["kwargs"], default: object = None) -> dict[str, Any]: ...
    @overload
    def get(self, key: Literal["is_observed", "stop", "done"], default: object = None) -> bool: ...
    @overload
    def get(self, key: Literal["intermediates"], default: object = None) -> list[Any]: ...
    @overload
    def get(
        self, key: Literal["cond_indep_stack"], default: object = None
    ) -> list[PlateFrame]: ...
    @overload
    def get(self, key: Literal["infer"], default: object = None) -> InferDict: ...
    @overload
    def get(self, key: str, default: T) -> Any | T: ...
    @overload
    def get(self, key: str, default: None = None) -> Any: ...
    def get(self, key: str, default: Any = None) -> Any:
        """``msg.get(key, default)``: the field under a NumPyro key, else ``default``."""
        if key not in _KEY_SET:
            return default
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in _KEY_SET

    def keys(self) -> tuple[MessageKey, ...]:
        """NumPyro's keys, so ``dict(msg)`` is the NumPyro message dict."""
        return NUMPYRO_KEYS

    def __iter__(self) -> Iterator[MessageKey]:
        return iter(NUMPYRO_KEYS)


_FIELDS = tuple(f.name for f in fields(Message))


def _unknown_key(key: str) -> str:
    if key in _FIELDS:
        return f"{key!r} is a plait field, not a NumPyro message key: read msg.{key}."
    hint = (
        " plait does not store log probabilities in a trace: compute "
        "msg.fn.log_prob(msg.value)."
        if "log_prob" in key
        else ""
    )
    return (
        f"{key!r} is not a key of a message; NumPyro's keys are {', '.join(NUMPYRO_KEYS)}."
        + hint
    )

Trace: TypeAlias = dict[str, Message]
"""An execution trace: site name to the message recorded for it, in execution order."""
