"""One branch of a ``cond`` / ``switch`` as the handlers outside see it, and running it.

A branch is not a loop: the handlers that act inside control flow (``substitute``,
``condition``, ``replay``, ``do``, ``plate``, ...) see its sites as they would see the sites
of the branch written inline, so :class:`BranchStep` (plait's
:class:`plait.ControlFlowStep`) hands their values over as they are. :func:`run_branch`
runs a branch isolated from the stack under the body forms of those handlers, the cond's
key and a fresh ``trace``, as ``scan`` runs one step of its body.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any, NamedTuple

from plait import Message, Messenger, Trace, isolated_stack
from plait.control_flow._step import ScanContext, active_context, mark_sites
from plait.errors import PlaitError
from plait.handlers import seed, trace

__all__ = ["BranchResult", "BranchStep", "branch_forms", "run_branch"]


class BranchStep:
    """The :class:`plait.ControlFlowStep` of one branch: one step, values as they are.

    Attributes:
        label: the primitive and branch as errors name them, e.g. ``"cond 'true_fun'"``.
        branch: the branch's position in the list of branches.

    Example:
        >>> from plait import Message
        >>> step = BranchStep("cond 'true_fun'", 0)
        >>> step.select(Message(type="sample", name="x"), 3.0), step.length
        (3.0, 1)
    """

    def __init__(self, label: str, branch: int) -> None:
        self._label = label
        self.branch = branch

    @property
    def label(self) -> str:
        return self._label

    @property
    def length(self) -> int:
        return 1

    @property
    def index(self) -> Any:
        return 0

    def site_name(self, msg: Message) -> str:
        # Renaming handlers (scope) act inside control flow: the site's name is the one
        # the handler's body form sees.
        return msg.name or ""

    def select(self, msg: Message, value: Any) -> Any:
        return value


class BranchResult(NamedTuple):
    """What running one branch gives.

    Fields:
        output: the branch's return value.
        trace: the branch's sites, in order.

    Example:
        >>> BranchResult(output=1.0, trace={}).output
        1.0
    """

    output: Any
    trace: Trace


def branch_forms(
    handlers: Sequence[Messenger[Any, Any]], step: BranchStep
) -> list[Messenger[Any, Any]]:
    """The body forms, outermost first, of the handlers that act inside control flow.

    Example:
        >>> from plait.handlers import substitute, trace
        >>> forms = branch_forms((trace(), substitute(data={"x": 1.0})), BranchStep("b", 0))
        >>> [type(form).__name__ for form in forms]
        ['substitute']
    """
    forms: list[Messenger[Any, Any]] = []
    for handler in handlers:
        if handler.acts_inside_loops():
            form = handler.for_control_flow(step)
            if form is not None:
                forms.append(form)
    return forms


def run_branch(
    fn: Callable[..., Any],
    operands: tuple[Any, ...],
    *,
    step: BranchStep,
    handlers: Sequence[Messenger[Any, Any]],
    rng_key: Any = None,
    loop: ScanContext | None = None,
    outer: Sequence[Messenger[Any, Any]] = (),
    inner: Sequence[Messenger[Any, Any]] = (),
) -> BranchResult:
    """Run ``fn(*operands)`` isolated from the stack, and record its sites.

    The branch runs under a fresh ``trace``, then ``outer``, the body forms of
    ``handlers`` (see :func:`branch_forms`), ``seed(rng_key)`` (every branch gets the cond's
    key, as in NumPyro), a marker tagging each site with the loop body ``loop`` the cond
    sits in (so handlers of an enclosing ``scan`` cut their values for it), and ``inner``.
    """
    with ExitStack() as stack:
        stack.enter_context(isolated_stack())
        recorded: Trace = stack.enter_context(trace())
        for handler in (*outer, *branch_forms(handlers, step)):
            stack.enter_context(handler)
        if rng_key is not None:
            stack.enter_context(seed(rng_seed=rng_key))
        if loop is not None:
            stack.enter_context(mark_sites(loop))
        for handler in inner:
            stack.enter_context(handler)
        # The branch runs in the loop body the cond sits in (for nested control flow).
        token = active_context().set(loop)
        try:
            output = fn(*operands)
        except PlaitError as e:
            e.add_note(f"(raised while tracing {step.label})")
            raise
        finally:
            active_context().reset(token)
    return BranchResult(output, recorded)
