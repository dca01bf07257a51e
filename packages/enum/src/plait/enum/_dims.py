"""Which tensor dimension holds which enumerated variable: frames and their allocation.

One :class:`DimState` lives for one run of an enumerated model (created by the outermost
``enum`` handler, kept in a ``ContextVar``). It is a stack of :class:`Frame`; the bottom
one is global. ``markov`` pushes frames: a frame sees its ``history`` predecessors (and,
inside a loop nested in another loop's iteration, that iteration's frames), so a dim used
by a frame that is no longer visible can be given to a new variable. This is how a chain
of length ``T`` runs in ``history + 1`` dims instead of ``T``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from plait import PlateFrame
from plait.errors import SiteError

__all__ = ["MAX_DIMS", "DimState", "Frame", "current_state"]

MAX_DIMS = 25
"""Enumeration never uses a dim left of ``-MAX_DIMS`` (NumPyro's limit too)."""


@dataclass(eq=False)
class Frame:
    """Variables allocated in one markov context: ``dims`` maps dim to variable name."""

    dims: dict[int, str] = field(default_factory=dict)
    parents: tuple[Frame, ...] = ()
    iter_parents: tuple[Frame, ...] = ()
    keep: bool = False


class DimState:
    """The frames of one enumerated run and the dims they hold.

    ``first_available_dim`` is the rightmost dim enumeration may use; plates use the dims
    to its right. With ``automatic``, no one chose it: the first enumerated site picks it
    from the plates seen so far (``nesting``, the deepest plate nesting seen). ``guessed``:
    it was not given by the user, so the run is checked against the nesting of the whole
    model afterwards (and run again with the right one). ``retired`` holds dims
    that carry a value no site may depend on any more (the final carry of an enumerated
    ``scan``), with the reason.
    """

    def __init__(self, first_available_dim: int, *, automatic: bool = False) -> None:
        self.first_available_dim = first_available_dim
        self.automatic = automatic
        self.guessed = automatic
        self.nesting = 0
        self.stack: list[Frame] = [Frame()]
        self.retired: dict[int, str] = {}
        self._version = 0
        self._snapshot: tuple[int, dict[int, str]] | None = None

    def note(self, frames: Sequence[PlateFrame]) -> None:
        """Record the plates of a site (for the deepest nesting of the run)."""
        for f in frames:
            if -f.dim > self.nesting:
                self.nesting = -f.dim

    def choose_first_dim(self, frames: Sequence[PlateFrame]) -> None:
        """Fix an automatic ``first_available_dim`` at the first enumerated site: one left
        of every plate seen so far, ``frames`` (that site's plates) included."""
        if self.automatic:
            self.note(frames)
            self.first_available_dim = -self.nesting - 1
            self.automatic = False

    @property
    def current(self) -> Frame:
        return self.stack[-1]

    @property
    def global_frame(self) -> Frame:
        return self.stack[0]

    def visible_frames(self) -> tuple[Frame, ...]:
        frame = self.current
        return (frame, *frame.parents, *frame.iter_parents, self.global_frame)

    def visible(self) -> dict[int, str]:
        """Dim to variable name for every variable the current frame can see (cached)."""
        snap = self._snapshot
        if snap is not None and snap[0] == self._version:
            return snap[1]
        seen: dict[int, str] = {}
        for frame in reversed(self.visible_frames()):
            seen.update(frame.dims)
        self._snapshot = (self._version, seen)
        return seen

    def allocate(self, name: str) -> int:
        """A fresh dim for the variable ``name``, recorded in the current frame.

        Raises:
            SiteError: every dim from ``first_available_dim`` to ``-MAX_DIMS`` is taken.
        """
        frame = self.current
        taken = set(self.retired)
        for visible in self.visible_frames():
            taken.update(visible.dims)
        dim = self.first_available_dim
        while dim in taken:
            dim -= 1
        if dim < -MAX_DIMS:
            raise SiteError(
                name,
                f"site '{name}': ran out of dims for enumeration ({len(taken)} enumerated "
                f"variables are visible at once, using dims {self.first_available_dim} to "
                f"{-MAX_DIMS}). Declare which variables are forgotten with "
                "plait.enum.markov (for t in markov(range(T)): ...), or use scan for "
                "long chains, or enumerate fewer sites.",
            )
        frame.dims[dim] = name
        if frame.keep:
            for parent in frame.parents:
                parent.dims[dim] = name
        self._version += 1
        return dim

    def push(self, frame: Frame) -> None:
        self.stack.append(frame)
        self._version += 1

    def pop(self) -> Frame:
        if len(self.stack) == 1:
            raise RuntimeError("plait.enum: cannot pop the global frame")
        self._version += 1
        return self.stack.pop()

    def retire(self, dims: dict[int, str]) -> None:
        """Forbid ``dims`` to later variables; sites that still use them get an error."""
        self.retired.update(dims)
        self._version += 1

    def new_frame(
        self, history: int, keep: bool = False, iter_parents: tuple[Frame, ...] = ()
    ) -> Frame:
        """A frame seeing the ``history`` most recent frames of the stack."""
        below = self.stack[len(self.stack) - history :] if history > 0 else []
        return Frame(parents=tuple(reversed(below)), iter_parents=iter_parents, keep=keep)

    def iteration_parents(self) -> tuple[Frame, ...]:
        """The current frame and, transitively, its ``iter_parents``: what every iteration
        of a loop entered here keeps seeing."""
        found = [self.current]
        frontier: tuple[Frame, ...] = (self.current,)
        while frontier:
            frontier = tuple(p for f in frontier for p in f.iter_parents)
            found.extend(frontier)
        return tuple(found)

    @contextmanager
    def frame(
        self, history: int = 1, keep: bool = False, iter_parents: tuple[Frame, ...] = ()
    ) -> Iterator[Frame]:
        """Push a new frame for the duration of the block."""
        frame = self.new_frame(history, keep, iter_parents)
        self.push(frame)
        try:
            yield frame
        finally:
            self.pop()


_STATE: ContextVar[DimState | None] = ContextVar("plait_enum_dims", default=None)


def current_state() -> DimState | None:
    """The dim state of the enumerated run in progress, or ``None`` outside ``enum``."""
    return _STATE.get()
