"""The modelling primitives: ``sample``, ``param``, ``deterministic``, ``factor``, ...

Each keeps NumPyro's signature and behaviour, with the empty-stack fast path first.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar, overload

import jax.numpy as jnp
from jax import Array, lax

from plait._distribution import Distribution, as_distribution
from plait._message import InferDict, Message
from plait._runtime import _STACK, apply_stack
from plait._unit import Unit
from plait.errors import SiteAssertionError, SiteError

__all__ = [
    "deterministic",
    "factor",
    "get_mask",
    "mutable",
    "param",
    "prng_key",
    "sample",
    "subsample",
]

T = TypeVar("T")


def sample(
    name: str,
    fn: Distribution | Any,
    obs: Any = None,
    rng_key: Array | None = None,
    sample_shape: tuple[int, ...] = (),
    infer: InferDict | None = None,
    obs_mask: Any = None,
) -> Array:
    """Draw (or observe) the random variable ``name`` from the distribution ``fn``.

    Args:
        name: the site name, unique in a model run.
        fn: a distribution (``numpyro.distributions`` or anything a plugin adapts).
        obs: an observed value; the site is then conditioned on it.
        rng_key: an explicit key; wins over ``seed``'s.
        sample_shape: extra leading sample dims (inside plates, folded into the batch).
        infer: inference options, see :class:`plait.InferDict`.
        obs_mask: a boolean array over the batch: ``True`` where ``obs`` is observed. The
            site splits into ``{name}_observed`` and ``{name}_unobserved`` sample sites and a
            deterministic ``name`` holding the merged value.

    Returns:
        The value of the site.

    Example:
        >>> import jax
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> sample("x", dist.Normal(0.0, 1.0), rng_key=jax.random.key(0)).shape
        ()
    """
    if type(sample_shape) is not tuple:
        sample_shape = tuple(sample_shape)
    dist = as_distribution(name, fn)
    if not _STACK.get():
        if obs is not None:
            return obs  # type: ignore[no-any-return]
        if rng_key is None:
            raise SiteAssertionError(
                name,
                f"site '{name}' needs a random key to draw a value: run the model under "
                "plait.handlers.seed(model, rng_seed=0) or pass rng_key=... to sample().",
            )
        return dist.sample(rng_key, sample_shape)
    if obs_mask is not None:
        return _masked_observe(name, dist, obs, obs_mask, rng_key, infer)
    msg = Message(
        type="sample",
        name=name,
        fn=dist,
        kwargs={"rng_key": rng_key, "sample_shape": sample_shape},
        value=obs,
        is_observed=obs is not None,
        infer=InferDict(**infer) if infer else InferDict(),
    )
    apply_stack(msg)
    if msg.is_observed and msg.type == "sample":
        _check_observation(msg)
    return msg.value  # type: ignore[no-any-return]


def _check_observation(msg: Message) -> None:
    """Raise where NumPyro's log density would: the observation and the site's shape
    (batch + event, as ``fn.shape()``) do not broadcast at all.

    An observation wider than the site is accepted, as in NumPyro: its log probability
    broadcasts to the observation's shape and is summed (iid data without a plate).
    """
    fn = msg.fn
    expected = tuple(fn.batch_shape) + tuple(fn.event_shape)
    found = tuple(jnp.shape(msg.value))
    try:
        lax.broadcast_shapes(found, expected)
    except ValueError:
        plates = "".join(
            f" inside plate '{f.name}' (size {f.size}, dim {f.dim})" for f in msg.cond_indep_stack
        )
        raise SiteError(
            msg.name,
            f"site '{msg.name}'{plates} observes a value of shape {found}, which does not "
            f"broadcast with the site's shape {expected} (batch {tuple(fn.batch_shape)} + "
            f"event {tuple(fn.event_shape)}). Reshape the observation or fix the "
            "distribution's batch shape.",
        ) from None


def _masked_observe(
    name: str,
    fn: Distribution,
    obs: Any,
    obs_mask: Any,
    rng_key: Array | None,
    infer: InferDict | None,
) -> Array:
    mask = jnp.asarray(obs_mask)
    if mask.dtype != jnp.bool_:
        raise SiteError(
            name,
            f"site '{name}' got obs_mask of dtype {mask.dtype}; it must be boolean "
            "(True where the value is observed), e.g. obs_mask=~jnp.isnan(y).",
        )
    observed = sample(f"{name}_observed", fn.mask(mask), obs=obs, rng_key=rng_key, infer=infer)
    unobserved = sample(f"{name}_unobserved", fn.mask(~mask), rng_key=rng_key, infer=infer)
    event_dim = len(fn.event_shape)
    batch_mask = jnp.reshape(mask, jnp.shape(mask) + (1,) * event_dim)
    return deterministic(name, jnp.where(batch_mask, observed, unobserved))


def _identity(value: T, **_: Any) -> T:
    return value


@overload
def param(
    name: str,
    init_value: Array | float,
    *,
    constraint: Any = None,
    event_dim: int | None = None,
    **kwargs: Any,
) -> Array: ...
@overload
def param(
    name: str,
    init_value: Callable[[Array], T] | T | None = None,
    *,
    constraint: Any = None,
    event_dim: int | None = None,
    **kwargs: Any,
) -> Any: ...
def param(
    name: str,
    init_value: Any = None,
    *,
    constraint: Any = None,
    event_dim: int | None = None,
    **kwargs: Any,
) -> Any:
    """Declare the learnable parameter ``name``.

    plait has no global parameter store: the value comes from ``substitute`` (as SVI
    does); otherwise the initial value is returned. A callable ``init_value`` is called
    with a key from :func:`prng_key` (so it needs ``seed``).

    Args:
        name: the site name.
        init_value: an array, or a callable ``key -> array``.
        constraint: the support of the parameter (a ``numpyro.distributions.constraints``
            object); consumers default to the real line.
        event_dim: the number of rightmost non-batch dims; inside a subsampled plate the
            batch dims are subsampled. Without it nothing is subsampled.
        **kwargs: other options kept in ``msg.kwargs``.

    Example:
        >>> import jax.numpy as jnp
        >>> from plait import param
        >>> param("w", jnp.ones(2))
        Array([1., 1.], dtype=float32)
    """
    if not _STACK.get():
        if callable(init_value):
            raise SiteAssertionError(
                name,
                f"param '{name}' has a callable init_value, which needs a random key: run the "
                "model under plait.handlers.seed(model, rng_seed=0).",
            )
        return init_value
    if constraint is not None:
        kwargs["constraint"] = constraint
    if event_dim is not None:
        kwargs["event_dim"] = event_dim
    if callable(init_value):
        init = init_value

        def lazy_init(*_: Any, **__: Any) -> Any:
            return init(prng_key())

        fn: Callable[..., Any] = lazy_init
        args: tuple[Any, ...] = ()
    else:
        fn, args = _identity, (init_value,)
    msg = Message(type="param", name=name, fn=fn, args=args, kwargs=kwargs)
    apply_stack(msg)
    return msg.value


def deterministic(name: str, value: T) -> T:
    """Record ``value`` in the trace as the deterministic site ``name`` and return it.

    Example:
        >>> from plait import deterministic
        >>> deterministic("total", 3.0)
        3.0
    """
    if not _STACK.get():
        return value
    msg = Message(type="deterministic", name=name, value=value)
    apply_stack(msg)
    return msg.value  # type: ignore[no-any-return]


def factor(name: str, log_factor: Any) -> None:
    """Add ``log_factor`` to the model's log density, as the observed site ``name``.

    Plates, ``scale`` and ``mask`` act on it as on any site.

    Example:
        >>> from plait import factor
        >>> factor("penalty", -1.5)
    """
    unit = Unit(log_factor)
    sample(name, unit, obs=unit.sample(), infer={"is_auxiliary": True})


def mutable(name: str, init_value: T | None = None) -> T | None:
    """A named mutable value (batch-norm statistics, say) that ``substitute`` can set.

    Example:
        >>> from plait import mutable
        >>> mutable("state", {"count": 0})
        {'count': 0}
    """
    if not _STACK.get():
        return init_value
    msg = Message(type="mutable", name=name, fn=_identity, args=(init_value,), value=init_value)
    apply_stack(msg)
    return msg.value  # type: ignore[no-any-return]


def _return_key(rng_key: Array | None = None) -> Array | None:
    return rng_key


def prng_key() -> Array | None:
    """A fresh random key from the enclosing ``seed``; ``None`` (with a warning) outside one.

    Example:
        >>> from plait import prng_key
        >>> from plait.handlers import seed
        >>> with seed(rng_seed=0):
        ...     key = prng_key()
        >>> key.shape
        ()
    """
    if not _STACK.get():
        warnings.warn(
            "plait.prng_key() was called outside of a seed handler and returns None; "
            "run the model under plait.handlers.seed(model, rng_seed=0).",
            stacklevel=2,
        )
        return None
    msg = Message(type="prng_key", fn=_return_key, kwargs={"rng_key": None})
    apply_stack(msg)
    return msg.value  # type: ignore[no-any-return]


def subsample(data: T, event_dim: int) -> T:
    """``data`` indexed by the subsample of every enclosing subsampled plate.

    Args:
        data: an array with the plate's full size on dim ``plate.dim - event_dim``.
        event_dim: the number of rightmost dims that are not batch dims.

    Example:
        >>> import jax.numpy as jnp
        >>> from plait import subsample
        >>> subsample(jnp.arange(3.0), event_dim=0)
        Array([0., 1., 2.], dtype=float32)
    """
    if not _STACK.get():
        return data
    msg = Message(type="subsample", value=data, kwargs={"event_dim": event_dim})
    apply_stack(msg)
    return msg.value  # type: ignore[no-any-return]


def _true() -> bool:
    return True


def get_mask() -> Any:
    """The mask of the enclosing ``mask`` handlers: ``None`` (none), ``False``, or an array.

    Useful to skip expensive ``factor`` terms when the log density is not needed.

    Example:
        >>> from plait import get_mask
        >>> get_mask() is None
        True
    """
    if not _STACK.get():
        return None
    msg = Message(type="inspect", fn=_true)
    apply_stack(msg)
    return msg.mask
