"""``enum`` and ``config_enumerate``: parallel enumeration of discrete sample sites."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from contextvars import Token
from typing import Any, Literal, ParamSpec, TypeVar, overload

from plait import Message, Messenger
from plait.control_flow.plugin_api import CondCall, CondResult, ScanCall, ScanResult
from plait.enum._cond import run_enumerated_cond
from plait.enum._dims import _STATE, DimState
from plait.enum._keys import DIM_NAMES
from plait.enum._scan_run import enumerates, run_enumerated_scan
from plait.enum._site_enum import (
    check_plate_dims,
    check_retired,
    enumerate_config,
    enumerate_site,
    wants_enumeration,
)
from plait.errors import HandlerError
from plait.handlers import infer_config

__all__ = ["config_enumerate", "enum"]

P = ParamSpec("P")
R = TypeVar("R")


class enum(Messenger[P, R]):
    """Enumerate discrete sample sites marked ``infer={"enumerate": "parallel"}``.

    Each such site (latent, without a value) gets its whole support as value, laid out on
    a fresh dim to the left of ``first_available_dim`` (which must be left of every plate
    dim); :func:`plait.enum.markov` lets later variables reuse the dims of forgotten
    ones. A ``scan`` under ``enum`` enumerates its body's discrete sites step by step,
    with the time-parallel contraction of plait-enum.

    Args:
        fn: the model.
        first_available_dim: the rightmost dim enumeration may use (negative); ``None``
            picks one left of the plates of the first enumerated site.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import plate, sample
        >>> from plait.enum import config_enumerate, enum
        >>> def model():
        ...     with plate("data", 3):
        ...         return sample("z", dist.Bernoulli(0.3))
        >>> enum(config_enumerate(model), first_available_dim=-2)().shape
        (2, 1)
    """

    @overload
    def __init__(
        self: enum[..., Any], fn: None = None, first_available_dim: int | None = None
    ) -> None: ...
    @overload
    def __init__(self, fn: Callable[P, R], first_available_dim: int | None = None) -> None: ...
    def __init__(
        self, fn: Callable[P, R] | None = None, first_available_dim: int | None = None
    ) -> None:
        if first_available_dim is not None and not (
            isinstance(first_available_dim, int) and first_available_dim < 0
        ):
            raise HandlerError(
                f"enum(first_available_dim={first_available_dim!r}): it must be a negative "
                "int (the rightmost dim enumeration may use, left of every plate dim) or None."
            )
        self.first_available_dim = first_available_dim
        self._token: Token[DimState | None] | None = None
        self._saved_dim: int | None = None
        super().__init__(fn)

    def _per_call(self) -> enum[P, R]:
        fresh = copy.copy(self)  # per-call state: the token and saved dim of this call
        fresh._token, fresh._saved_dim = None, None
        return fresh

    def __enter__(self) -> Any:
        state = _STATE.get()
        if state is None:
            if self.first_available_dim is None:
                state = DimState(-1, automatic=True)
            else:
                state = DimState(self.first_available_dim)
            self._token = _STATE.set(state)
        elif self.first_available_dim is not None:
            self._saved_dim = state.first_available_dim
            state.first_available_dim = self.first_available_dim
            state.automatic = state.guessed = False
        return super().__enter__()

    def __exit__(self, exc_type: object, exc_value: object, traceback: object) -> None:
        super().__exit__(exc_type, exc_value, traceback)
        if self._token is not None:
            _STATE.reset(self._token)
            self._token = None
        elif self._saved_dim is not None:
            state = _STATE.get()
            if state is not None:
                state.first_available_dim = self._saved_dim
            self._saved_dim = None

    @property
    def state(self) -> DimState:
        state = _STATE.get()
        assert state is not None, "enum used outside its context"
        return state

    def process_message(self, msg: Message) -> None:
        self.state.note(msg.cond_indep_stack)
        super().process_message(msg)

    def process_sample(self, msg: Message) -> None:
        state = self.state
        if wants_enumeration(msg):
            state.choose_first_dim(msg.cond_indep_stack)
            check_plate_dims(msg, state, enumerating=True)
            enumerate_site(msg, state)
        elif msg.cond_indep_stack and state.visible():
            check_plate_dims(msg, state, enumerating=False)

    def postprocess_sample(self, msg: Message) -> None:
        if DIM_NAMES in msg.stash:  # enumerated inside a scan body: named there
            return
        state = self.state
        msg.stash[DIM_NAMES] = state.visible()
        if state.retired:
            check_retired(msg, state)

    def run_scan(self, call: ScanCall, proceed: Callable[[ScanCall], ScanResult]) -> ScanResult:
        """A scan whose body has discrete sites is summed out step by step, vectorised over
        time (see ``_scan_run.py``); any other scan runs as it would without ``enum``."""
        if call.length == 0 or not enumerates(call):
            return proceed(call)
        self.state.choose_first_dim(call.plates)
        return run_enumerated_scan(call, self.state)

    def run_cond(self, call: CondCall, proceed: Callable[[CondCall], CondResult]) -> CondResult:
        """A ``cond``/``switch`` whose index is an enumerated site, or whose branches have
        discrete sites, is summed out: every branch evaluated with its discrete sites
        enumerated, combined per value of the index (see ``_cond.py``)."""
        return run_enumerated_cond(call, self.state, proceed)


@overload
def config_enumerate(
    fn: None = None, default: Literal["parallel"] | None = "parallel"
) -> Callable[[Callable[P, R]], infer_config[P, R]]: ...
@overload
def config_enumerate(
    fn: Callable[P, R], default: Literal["parallel"] | None = "parallel"
) -> infer_config[P, R]: ...
def config_enumerate(
    fn: Callable[P, R] | None = None, default: Literal["parallel"] | None = "parallel"
) -> infer_config[P, R] | Callable[[Callable[P, R]], infer_config[P, R]]:
    """Mark every latent site with enumerable support for enumeration.

    A site keeps an ``enumerate`` option it already has. Works as a function or a
    decorator (``@config_enumerate``).

    Args:
        fn: the model.
        default: the option to set; only ``"parallel"`` is supported.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.enum import config_enumerate
        >>> from plait.handlers import seed, trace
        >>> def model():
        ...     sample("z", dist.Bernoulli(0.5))
        ...     sample("x", dist.Normal(0.0, 1.0))
        >>> tr = trace(seed(config_enumerate(model), rng_seed=0)).get_trace()
        >>> tr["z"].infer, tr["x"].infer
        ({'enumerate': 'parallel'}, {})
    """
    if default not in ("parallel", None):
        raise HandlerError(
            f"config_enumerate(default={default!r}): only 'parallel' enumeration is supported."
        )
    config = functools.partial(enumerate_config, default)
    if fn is None:
        return functools.partial(infer_config, config_fn=config)  # type: ignore[return-value]
    return infer_config(fn, config_fn=config)
