"""``lift``: turn ``param`` sites into ``sample`` sites with a prior."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from plait import Distribution, Message, Messenger

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
        prior = self.prior.get(name) if isinstance(self.prior, Mapping) else self.prior
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
