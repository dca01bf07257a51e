"""``replay``: reuse the values of latent sites recorded in another trace."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

from plait import ControlFlowStep, InferDict, Message, Messenger, Trace
from plait.errors import HandlerAssertionError, SiteRuntimeError

__all__ = ["replay"]

P = ParamSpec("P")
R = TypeVar("R")


class replay(Messenger[P, R]):
    """Give latent ``sample`` sites (and ``plate`` indices) the values recorded in
    ``trace`` under the same name, with their ``infer`` options. Reaches into ``scan``
    bodies. This is how ELBOs run the model on the guide's draws.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import replay, seed, trace
        >>> def model() -> object:
        ...     return sample("x", dist.Normal(0.0, 1.0))
        >>> guide_trace = trace(seed(model, rng_seed=1)).get_trace()
        >>> bool(replay(model, trace=guide_trace)() == guide_trace["x"].value)
        True
    """

    @overload
    def __init__(self: replay[..., Any], fn: None = None, *, trace: Trace) -> None: ...
    @overload
    def __init__(self, fn: Callable[P, R], trace: Trace) -> None: ...
    def __init__(self, fn: Callable[P, R] | None = None, trace: Trace | None = None) -> None:
        if trace is None:
            raise HandlerAssertionError(
                "replay() needs the trace to replay: replay(model, trace=tr)."
            )
        self.trace = trace
        super().__init__(fn)

    def _recorded(self, msg: Message, name: str | None) -> Message | None:
        if name is None or name not in self.trace or msg.is_observed:
            return None
        recorded = self.trace[name]
        if recorded.type != "sample" or recorded.is_observed:
            raise SiteRuntimeError(
                name,
                f"replay: site '{name}' is a latent sample site in the model but is "
                f"{'observed' if recorded.is_observed else 'a ' + recorded.type} in the "
                "replayed trace; replay only latent samples onto latent samples.",
            )
        return recorded

    def process_sample(self, msg: Message) -> None:
        recorded = self._recorded(msg, msg.name)
        if recorded is not None:
            msg.value = recorded.value
            msg.infer = recorded.infer.copy()

    def process_plate(self, msg: Message) -> None:
        name = msg.name
        if name is None or name not in self.trace:
            return
        recorded = self.trace[name]
        if recorded.type != "plate":
            raise SiteRuntimeError(
                name,
                f"replay: site '{name}' is a plate in the model but a "
                f"{recorded.type} site in the replayed trace.",
            )
        msg.value = recorded.value

    def for_control_flow(self, step: ControlFlowStep) -> Messenger[Any, Any]:
        def lookup(msg: Message) -> tuple[Any, InferDict] | None:
            recorded = self._recorded(msg, step.site_name(msg))
            if recorded is None:
                return None
            value = step.select(msg, recorded.value)
            return None if value is None else (value, recorded.infer)

        return _replay_step(lookup)


class _replay_step(Messenger[..., Any]):
    """``replay`` inside a loop body: this step's slice of the recorded values. Nests, so
    the body of a loop inside the loop is replayed too."""

    def __init__(self, lookup: Callable[[Message], tuple[Any, InferDict] | None]) -> None:
        self.lookup = lookup
        super().__init__()

    def process_sample(self, msg: Message) -> None:
        found = self.lookup(msg)
        if found is not None:
            msg.value = found[0]
            msg.infer = found[1].copy()

    def for_control_flow(self, step: ControlFlowStep) -> Messenger[Any, Any]:
        def lookup(msg: Message) -> tuple[Any, InferDict] | None:
            found = self.lookup(msg)
            if found is None:
                return None
            value = step.select(msg, found[0])
            return None if value is None else (value, found[1])

        return _replay_step(lookup)
