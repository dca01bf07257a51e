"""``enum`` and ``config_enumerate``: parallel enumeration of discrete sample sites."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from contextvars import Token
from typing import Any, Final, Literal, ParamSpec, TypeVar, overload

import jax.numpy as jnp

from plait import Message, Messenger, StashKey
from plait.enum._dims import _STATE, DimState
from plait.errors import HandlerError, SiteError
from plait.handlers import infer_config

__all__ = [
    "DIM_NAMES",
    "ENUM_DIM",
    "config_enumerate",
    "enum",
    "enumerate_site",
    "wants_enumeration",
]

P = ParamSpec("P")
R = TypeVar("R")

ENUM_DIM: Final[StashKey[int]] = StashKey()
"""The dim that holds an enumerated site's support (its value is the support there)."""

DIM_NAMES: Final[StashKey[dict[int, str]]] = StashKey()
"""For every sample site seen under ``enum``: the enumerated variables visible there,
dim to name. A dim of the site's log-density of size > 1 is one of these, or a plate."""


def wants_enumeration(msg: Message) -> bool:
    """Whether the sample site ``msg`` asks to be enumerated now.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import Message
        >>> msg = Message(type="sample", name="z", fn=dist.Bernoulli(0.5),
        ...               infer={"enumerate": "parallel"})
        >>> wants_enumeration(msg)
        True
    """
    return (
        msg.type == "sample"
        and not msg.done
        and not msg.is_observed
        and msg.value is None
        and msg.infer.get("enumerate") == "parallel"
        and not msg.infer.get("expand", False)
    )


def enumerate_site(msg: Message, state: DimState) -> None:
    """Give the site ``msg`` its whole support, on a fresh dim left of the plates.

    Raises:
        SiteError: the distribution has no enumerable support, or the site has batch
            dims that are not plates, or no dim is left.
    """
    name = msg.name or "?"
    fn = msg.fn
    if msg.infer.get("num_samples") is not None:
        raise SiteError(
            name,
            f"site '{name}' asks for num_samples={msg.infer.get('num_samples')}; Monte "
            "Carlo enumeration is not supported. Drop 'num_samples' to enumerate exactly.",
        )
    if not getattr(fn, "has_enumerate_support", False):
        raise SiteError(
            name,
            f"site '{name}' asks for enumeration (infer={{'enumerate': 'parallel'}}) but its "
            f"distribution {type(fn).__name__} has no enumerable support "
            "(has_enumerate_support is False). Enumerate only discrete sites with finite "
            "support (Bernoulli, Categorical, DiscreteUniform, ...), or drop the option.",
        )
    _check_plates(msg, state)
    support = jnp.asarray(fn.enumerate_support(expand=False))
    event_shape = tuple(fn.event_shape)
    size = support.shape[0]
    if support.size != size * _prod(event_shape):
        raise SiteError(
            name,
            f"site '{name}': the support of {type(fn).__name__} varies across its batch "
            f"(enumerate_support(expand=False) has shape {support.shape}); plait can only "
            "enumerate a support shared by the whole batch.",
        )
    dim = state.allocate(name)
    support = jnp.reshape(support, (size,) + (1,) * (-dim - 1) + event_shape)
    msg.value = support
    msg.done = True
    msg.stash[ENUM_DIM] = dim


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for n in shape:
        out *= n
    return out


def _check_plates(msg: Message, state: DimState) -> None:
    name = msg.name or "?"
    frames = msg.cond_indep_stack
    plate_dims = {f.dim for f in frames}
    batch = tuple(msg.fn.batch_shape)
    visible = state.visible()
    for k, n in enumerate(batch):
        dim = k - len(batch)
        if n != 1 and dim not in plate_dims and dim not in visible:
            raise SiteError(
                name,
                f"site '{name}' has batch shape {batch} whose dim {dim} (size {n}) is not a "
                "plate. An enumerated site must declare its batch dims with plates "
                f"(with plate('...', {n}, dim={dim}): ...), or use .to_event() for dims "
                "that belong to one value.",
            )


def _check_plate_dims(msg: Message, state: DimState, enumerating: bool) -> None:
    visible = state.visible()
    for f in msg.cond_indep_stack:
        if f.dim in visible or (enumerating and f.dim <= state.first_available_dim):
            raise SiteError(
                msg.name,
                f"site '{msg.name}' is inside plate '{f.name}' (dim {f.dim}), but "
                f"enumeration uses dims from {state.first_available_dim} leftwards. Pass "
                f"first_available_dim={min(f.dim, state.first_available_dim) - 1} (one left "
                "of the leftmost plate dim) to enum / infer_discrete.",
            )


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
        self._pending_auto = False
        super().__init__(fn)

    def _per_call(self) -> enum[P, R]:
        fresh = copy.copy(self)  # per-call state: the token and saved dim of this call
        fresh._tokens = []
        fresh._token, fresh._saved_dim, fresh._pending_auto = None, None, False
        return fresh

    def __enter__(self) -> Any:
        state = _STATE.get()
        if state is None:
            fad = -1 if self.first_available_dim is None else self.first_available_dim
            self._pending_auto = self.first_available_dim is None
            self._token = _STATE.set(DimState(fad))
        elif self.first_available_dim is not None:
            self._saved_dim = state.first_available_dim
            state.first_available_dim = self.first_available_dim
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

    def process_sample(self, msg: Message) -> None:
        state = self.state
        if wants_enumeration(msg):
            if self._pending_auto:
                nesting = max((-f.dim for f in msg.cond_indep_stack), default=0)
                state.first_available_dim = -nesting - 1
                self._pending_auto = False
            _check_plate_dims(msg, state, enumerating=True)
            enumerate_site(msg, state)
        elif msg.cond_indep_stack and state.visible():
            _check_plate_dims(msg, state, enumerating=False)

    def postprocess_sample(self, msg: Message) -> None:
        if DIM_NAMES in msg.stash:  # enumerated inside a scan body: named there
            return
        state = self.state
        msg.stash[DIM_NAMES] = state.visible()
        if state.retired:
            check_retired(msg, state)

    def process_control_flow(self, msg: Message) -> None:
        # A scan: its runner is replaced by the enumerated one (which falls back to the
        # original when the body has nothing to enumerate).
        from plait.enum._scan_body import is_scan
        from plait.enum._scan_enum import EnumScanRunner

        if msg.value is not None or not is_scan(msg):
            return
        if self._pending_auto:
            nesting = max((-f.dim for f in msg.cond_indep_stack), default=0)
            self.state.first_available_dim = -nesting - 1
            self._pending_auto = False
        if not isinstance(msg.fn, EnumScanRunner):
            msg.fn = EnumScanRunner(msg, self.state, msg.fn)


def check_retired(msg: Message, state: DimState) -> None:
    """Refuse a site that depends on a retired dim (an enumerated scan's last carry)."""
    shape = _batch_shape(msg)
    for dim, why in state.retired.items():
        if -dim <= len(shape) and shape[dim] != 1 and dim not in state.visible():
            raise SiteError(
                msg.name,
                f"site '{msg.name}' depends on {why} (its batch dim {dim} has size "
                f"{shape[dim]}). Under enumeration nothing outside a scan may depend on the "
                "scan's last carry: its discrete values are summed out inside the scan. "
                "Move the computation into the scan body (and return it as part of ys), or "
                "do not enumerate the scan's sites.",
            )


def _batch_shape(msg: Message) -> tuple[int, ...]:
    fn = msg.fn
    batch = tuple(fn.batch_shape)
    value_shape = tuple(jnp.shape(msg.value)) if msg.value is not None else ()
    event = len(fn.event_shape)
    value_batch = value_shape[: len(value_shape) - event] if event else value_shape
    return tuple(jnp.broadcast_shapes(batch, value_batch))


def _config_enumerate_fn(default: str | None, msg: Message) -> dict[str, Any]:
    if (
        msg.type == "sample"
        and not msg.is_observed
        and getattr(msg.fn, "has_enumerate_support", False)
    ):
        return {"enumerate": msg.infer.get("enumerate", default)}
    return {}


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
    config = functools.partial(_config_enumerate_fn, default)
    if fn is None:
        return functools.partial(infer_config, config_fn=config)  # type: ignore[return-value]
    return infer_config(fn, config_fn=config)
