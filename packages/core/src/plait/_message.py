"""The message that every primitive sends through the handler stack.

One typed definition, documented field by field, replaces NumPyro's ``dict[str, Any]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeAlias, TypedDict, TypeVar

if TYPE_CHECKING:
    from plait._messenger import Messenger

__all__ = [
    "InferDict",
    "Message",
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

    ``size`` is the subsample size when the plate subsamples.
    """

    name: str
    dim: int
    size: int


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


_FIELDS = tuple(f.name for f in fields(Message))

Trace: TypeAlias = dict[str, Message]
"""An execution trace: site name to the message recorded for it, in execution order."""
