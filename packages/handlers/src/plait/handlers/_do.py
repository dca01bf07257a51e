"""``do``: interventions (Pearl's do-operator)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from plait import ControlFlowStep, Message, Messenger, StashKey, apply_stack

__all__ = ["do"]

P = ParamSpec("P")
R = TypeVar("R")

_INTERVENER: StashKey[int] = StashKey()


class do(Messenger[P, R]):
    """Intervene on ``sample`` sites: the program receives ``data[name]``.

    The site is first sent untouched through the whole stack (so it is still drawn and
    recorded under its own name); the intervened copy is recorded as ``name__CF``, observed,
    and hidden from the handlers outside. Composes with ``condition`` for counterfactuals.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import do, seed, trace
        >>> def model() -> object:
        ...     return sample("x", dist.Normal(0.0, 1.0)) + 1.0
        >>> float(seed(do(model, data={"x": 1.0}), rng_seed=0)())
        2.0
    """

    @overload
    def __init__(
        self: do[..., Any], fn: None = None, data: Mapping[str, Any] | None = None
    ) -> None: ...
    @overload
    def __init__(self, fn: Callable[P, R], data: Mapping[str, Any] | None = None) -> None: ...
    def __init__(
        self, fn: Callable[P, R] | None = None, data: Mapping[str, Any] | None = None
    ) -> None:
        self.data = dict(data or {})
        # Inside a loop body: the value for a body site (names and steps resolved).
        self._in_loop: Callable[[Message], Any] | None = None
        super().__init__(fn)

    def _value(self, msg: Message) -> Any:
        if self._in_loop is not None:
            return self._in_loop(msg)
        return self.data.get(msg.name) if msg.name is not None else None

    def process_sample(self, msg: Message) -> None:
        name = msg.name
        previous = msg.stash.get(_INTERVENER)
        if previous == id(self) or name is None:
            return
        value = self._value(msg)
        if value is None:
            return
        if previous is not None:
            warnings.warn(
                f"do: site '{name}' is intervened on more than once; this is almost "
                "certainly not what you want.",
                RuntimeWarning,
                stacklevel=2,
            )
        msg.stash[_INTERVENER] = id(self)
        # The untouched site goes through the whole stack again, as a fresh message.
        original = msg.copy()
        original.kwargs = dict(msg.kwargs)
        original.infer = msg.infer.copy()
        original.cond_indep_stack = []
        original.scale = None
        original.stash = type(msg.stash)(msg.stash)
        apply_stack(original)
        msg.name = f"{name}__CF"
        msg.value = value
        msg.is_observed = True
        msg.stop = True

    def for_control_flow(self, step: ControlFlowStep) -> do[..., Any]:
        """Inside a loop body: intervene on each step's site with this step's value."""
        data, outer = self.data, self._in_loop

        def value(msg: Message) -> Any:
            # The loop directly inside this handler resolves names; nested ones select.
            found = data.get(step.site_name(msg)) if outer is None else outer(msg)
            return None if found is None else step.select(msg, found)

        form: do[..., Any] = do()
        form._in_loop = value
        return form
