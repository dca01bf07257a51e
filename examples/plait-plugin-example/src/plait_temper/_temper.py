"""``temper``: divide the log likelihood of observed sites by a temperature."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from plait import Message, Messenger

P = ParamSpec("P")
R = TypeVar("R")


class temper(Messenger[P, R]):
    """Scale every observed sample site by ``1 / temperature`` (a tempered likelihood).

    Example:
        >>> import numpyro.distributions as dist
        >>> import plait
        >>> from plait.handlers import trace
        >>> def model() -> None:
        ...     plait.sample("y", dist.Normal(0.0, 1.0), obs=1.0)
        >>> trace(temper(model, temperature=4.0)).get_trace()["y"].scale
        0.25
    """

    def __init__(self, fn: Callable[P, R] | None = None, temperature: float = 1.0) -> None:
        if temperature <= 0:
            raise ValueError(f"temper() needs a positive temperature, got {temperature}.")
        self.temperature = temperature
        super().__init__(fn)

    def process_sample(self, msg: Message) -> None:
        if msg.is_observed:
            factor = 1.0 / self.temperature
            msg.scale = factor if msg.scale is None else msg.scale * factor
