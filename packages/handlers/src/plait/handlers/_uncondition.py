"""``uncondition``: turn observed sample sites back into latent ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

from plait import ControlFlowStep, Message, Messenger, prng_key

__all__ = ["uncondition"]

P = ParamSpec("P")
R = TypeVar("R")


class uncondition(Messenger[P, R]):
    """Make observed ``sample`` sites latent: the value is drawn again, and the
    observation is kept in ``infer["obs"]`` with ``infer["was_observed"] = True``.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import seed, trace, uncondition
        >>> def model() -> None:
        ...     sample("y", dist.Normal(0.0, 1.0), obs=5.0)
        >>> site = trace(seed(uncondition(model), rng_seed=0)).get_trace()["y"]
        >>> site.is_observed, site.infer["was_observed"]
        (False, True)
    """

    @overload
    def __init__(self: uncondition[..., Any], fn: None = None) -> None: ...
    @overload
    def __init__(self, fn: Callable[P, R]) -> None: ...
    def __init__(self, fn: Callable[P, R] | None = None) -> None:
        super().__init__(fn)

    def process_sample(self, msg: Message) -> None:
        if not msg.is_observed:
            return
        msg.is_observed = False
        msg.infer["was_observed"] = True
        msg.infer["obs"] = msg.value
        msg.value = None
        if msg.kwargs.get("rng_key") is None:
            msg.kwargs["rng_key"] = prng_key()

    def for_control_flow(self, step: ControlFlowStep) -> uncondition[..., Any]:
        """Inside a loop body: uncondition each step's observed sites."""
        return uncondition()
