"""``lift``: turn ``param`` sites into ``sample`` sites with a prior."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from plait import ControlFlowStep, Distribution, Message, Messenger
from plait.errors import SiteError

__all__ = ["lift"]

P = ParamSpec("P")
R = TypeVar("R")


class lift(Messenger[P, R]):
    """Make each ``param`` site a latent ``sample`` site drawn from ``prior`` (one
    distribution for all, or a dict by name; params without a prior stay params).
    Repeated params of one name reuse the first draw.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import param
        >>> from plait.handlers import lift, seed, trace
        >>> def model() -> None:
        ...     param("w", 0.5)
        >>> lifted = lift(model, prior={"w": dist.Normal(0.0, 1.0)})
        >>> trace(seed(lifted, rng_seed=0)).get_trace()["w"].type
        'sample'
    """

    @overload
    def __init__(
        self: lift[..., Any],
        fn: None = None,
        prior: Distribution | Mapping[str, Distribution] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self,
        fn: Callable[P, R],
        prior: Distribution | Mapping[str, Distribution] | None = None,
    ) -> None: ...
    def __init__(
        self,
        fn: Callable[P, R] | None = None,
        prior: Distribution | Mapping[str, Distribution] | None = None,
    ) -> None:
        self.prior = prior
        self._drawn: dict[str, Message] = {}
        super().__init__(fn)

    def __enter__(self) -> Any:
        self._drawn = {}
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        self._drawn = {}
        super().__exit__(*exc)

    def process_param(self, msg: Message) -> None:
        name = msg.name
        assert name is not None
        prior = self._prior(name)
        if prior is None:
            return
        msg.type = "sample"
        msg.fn = prior
        msg.args = ()
        msg.kwargs = {
            "rng_key": msg.kwargs.get("rng_key"),
            "sample_shape": msg.kwargs.get("sample_shape", ()),
        }
        msg.intermediates = []
        if name in self._drawn:
            msg.value = self._drawn[name].value
            msg.is_observed = True
            msg.stop = True
        else:
            self._drawn[name] = msg
            msg.is_observed = False

    def _prior(self, name: str) -> Distribution | None:
        return self.prior.get(name) if isinstance(self.prior, Mapping) else self.prior

    def for_control_flow(self, step: ControlFlowStep) -> Messenger[Any, Any]:
        """Inside a loop body ``lift`` refuses the params it would lift (see below)."""
        return _lift_in_loop(self, step)


class _lift_in_loop(Messenger[..., Any]):
    """``lift`` outside a loop would turn a body param, stacked over time, into one sample
    site with a prior term per step, while the unrolled loop draws the param once and
    reuses it. Neither can be had from a loop, so a param it would lift is an error."""

    def __init__(self, outer: lift[..., Any], step: ControlFlowStep) -> None:
        self.outer = outer
        self.step = step
        super().__init__()

    def process_param(self, msg: Message) -> None:
        seen = self.step.site_name(msg)
        if self.outer._prior(seen) is not None:
            raise SiteError(
                seen,
                f"lift: param '{seen}' is declared inside the body of {self.step.label}, so "
                "after the loop it is a series stacked over time, and lifting it there would "
                "not draw it once as the unrolled loop does. Declare the param outside the "
                "loop (and close over it or pass it in the carry), or apply lift inside the "
                "body (a fresh draw per step).",
            )

    def for_control_flow(self, step: ControlFlowStep) -> Messenger[Any, Any]:
        # ``self.step`` resolves the names of sites in loops nested inside its own loop.
        return self
