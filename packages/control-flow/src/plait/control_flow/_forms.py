"""The handlers a ``scan`` body runs under: the body forms of the handlers outside.

Every handler the loop's ``control_flow`` message reached is asked for its body form
(:meth:`plait.Messenger.for_control_flow`), outermost first. Plates enclosing the loop come
back as equivalent plates, so the body is vectorised over them. ``do``, ``uncondition`` and
``reparam`` keep the default contract (act on the stacked sites after the loop), which is
wrong for them: intervening on, unconditioning or reparameterizing a whole stacked series
is not what they do to the unrolled loop. plait gives them body forms here, and the
originals are left out when the stacked sites are sent again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from plait import REEMITTED, Message, Messenger, plate
from plait.control_flow._step import ScanContext, ScanStep
from plait.handlers import do, reparam, uncondition
from plait.handlers._reparam import Reparam

__all__ = ["BodyForm", "acts_inside", "body_forms"]

BodyForm = Callable[[], Messenger[Any, Any]]
"""Builds one body handler; called inside the isolated body stack, outermost first."""


class _acts_inside(Messenger[..., Any]):
    """Base of the body forms plait provides for ``do``, ``uncondition``, ``reparam``."""


def acts_inside(handler: Messenger[Any, Any]) -> bool:
    """True for handlers that act inside a loop body through a form plait provides; the
    loop's stacked sites are sent again without them."""
    return isinstance(handler, do | uncondition | reparam | _acts_inside)


class _uncondition_step(_acts_inside):
    def __init__(self) -> None:
        self.inner: uncondition[..., Any] = uncondition()
        super().__init__()

    def process_sample(self, msg: Message) -> None:
        if not msg.stash.get(REEMITTED):
            self.inner.process_message(msg)

    def for_control_flow(self, step: Any) -> Messenger[Any, Any]:
        return _uncondition_step()


class _do_step(_acts_inside):
    def __init__(self, lookup: Callable[[Message], Any], step: ScanStep) -> None:
        self.lookup = lookup
        self.step = step
        self.inner: do[..., Any] = do()
        super().__init__()

    def value(self, msg: Message) -> Any:
        found = self.lookup(msg)
        return None if found is None else self.step.select(msg, found)

    def process_sample(self, msg: Message) -> None:
        if msg.stash.get(REEMITTED) or msg.name is None:
            return
        value = self.value(msg)
        if value is not None:
            self.inner.data = {msg.name: value}
            self.inner.process_message(msg)

    def for_control_flow(self, step: Any) -> Messenger[Any, Any]:
        return _do_step(self.value, step)


class _reparam_step(_acts_inside):
    def __init__(self, choose: Callable[[Message], Reparam | None]) -> None:
        self.choose = choose
        self.inner: reparam[..., Any] = reparam(config=choose)
        super().__init__()

    def process_sample(self, msg: Message) -> None:
        if not msg.stash.get(REEMITTED):
            self.inner.process_message(msg)

    def for_control_flow(self, step: Any) -> Messenger[Any, Any]:
        return _reparam_step(self.choose)


def _builtin_form(handler: Messenger[Any, Any], step: ScanStep) -> Messenger[Any, Any] | None:
    if isinstance(handler, uncondition):
        return _uncondition_step()
    if isinstance(handler, do):
        data = handler.data
        return _do_step(lambda msg: data.get(step.site_name(msg)), step)
    if isinstance(handler, reparam):
        config = handler.config
        if isinstance(config, Mapping):
            table = config
            return _reparam_step(lambda msg: table.get(step.site_name(msg)))
        return _reparam_step(config)
    return None


def _fixed(form: Messenger[Any, Any]) -> Messenger[Any, Any]:
    return form


def body_forms(context: ScanContext) -> list[BodyForm]:
    """The body handlers for one step of the loop described by ``context``, outermost
    first: each reached handler's body form, equivalent plates for the enclosing plates.

    Example:
        >>> from plait.control_flow import ScanContext, body_forms
        >>> from plait.handlers import substitute, trace
        >>> handlers = (trace(), substitute(data={"x": 1.0}))
        >>> forms = body_forms(ScanContext("f", 3, 0, handlers, (), None))
        >>> [type(make()).__name__ for make in forms]  # trace acts after the loop
        ['substitute']
    """
    forms: list[BodyForm] = []
    plate_dims = {f.dim for f in context.frames}
    handled_by = context.handled_by
    for k, handler in enumerate(handled_by):
        if isinstance(handler, plate):
            if handler.dim in plate_dims:
                forms.append(partial(plate, handler.name, handler.subsample_size, dim=handler.dim))
            continue
        step = ScanStep(context, handled_by[k + 1 :])
        form = handler.for_control_flow(step)
        if form is None:
            form = _builtin_form(handler, step)
        if form is not None:
            forms.append(partial(_fixed, form))
    return forms
