"""``scan``: ``lax.scan`` as a primitive that composes with plait's handlers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp

from plait import Message, apply_stack, current_stack, isolated_stack
from plait.control_flow._cache import cached_loop
from plait.control_flow._forms import acts_inside
from plait.control_flow._loop import LoopResult, LoopSpec, run_loop
from plait.control_flow._sites import SiteSkeleton, stacked_sites
from plait.control_flow._step import active_context
from plait.errors import PlaitError, SiteError
from plait.handlers import lift

__all__ = ["ScanResult", "scan"]

C = TypeVar("C")
Y = TypeVar("Y")


class ScanResult(NamedTuple):
    """The value of a scan's ``control_flow`` message.

    Fields:
        carry: the final carry.
        ys: the stacked outputs.
        sites: the body's sites stacked over time, in execution order, as they will be
            sent again through the handlers (marked :data:`plait.REEMITTED`).

    A handler that answers a scan's message itself (sets ``msg.value``) must give one.

    Example:
        >>> ScanResult(carry=0.0, ys=None, sites={}).sites
        {}
    """

    carry: Any
    ys: Any
    sites: dict[str, Message]


def _name(f: Callable[..., Any]) -> str:
    return str(getattr(f, "__name__", type(f).__name__))


def _check_inputs(name: str, xs: Any, length: int | None) -> tuple[Any, int]:
    if length is not None and (isinstance(length, bool) or not isinstance(length, int)):
        raise PlaitError(f"scan '{name}': length must be a Python int, got {length!r}.")
    if length is not None and length < 0:
        raise PlaitError(f"scan '{name}': length must be >= 0, got {length}.")
    xs = jax.tree_util.tree_map(jnp.asarray, xs)
    leaves = jax.tree_util.tree_leaves_with_path(xs)
    for path, leaf in leaves:
        if jnp.ndim(leaf) == 0:
            raise PlaitError(
                f"scan '{name}': xs{jax.tree_util.keystr(path)} is a scalar; every leaf of xs "
                "needs a leading dim to scan over."
            )
    sizes = {jax.tree_util.keystr(path): int(jnp.shape(leaf)[0]) for path, leaf in leaves}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"xs{p}: {s}" for p, s in sizes.items())
        raise PlaitError(
            f"scan '{name}': the leaves of xs have different leading sizes ({listed}); they "
            "must all have the scan's length along dim 0."
        )
    if sizes:
        size = next(iter(sizes.values()))
        if length is not None and length != size:
            raise PlaitError(
                f"scan '{name}': length={length} but xs has leading size {size}; drop "
                "length or make them agree."
            )
        return xs, size
    if length is None:
        raise PlaitError(
            f"scan '{name}': xs has no arrays, so the number of steps is unknown; pass length=... ."
        )
    return xs, length


def _run(
    f: Callable[[Any, Any], tuple[Any, Any]], init: Any, xs: Any, rng_key: Any, spec: LoopSpec
) -> tuple[LoopResult, dict[str, SiteSkeleton]]:
    cached = cached_loop(f, init, xs, rng_key, spec)
    if cached is not None:
        return cached
    skeletons: dict[str, SiteSkeleton] = {}
    return run_loop(f, init, xs, rng_key, spec, skeletons), skeletons


class _Runner:
    """The default action of a scan's message: run the loop under the handlers it reached."""

    def __init__(self, msg: Message) -> None:
        self.msg = msg

    def __call__(
        self,
        f: Callable[[Any, Any], tuple[Any, Any]],
        init: Any,
        xs: Any,
        *,
        rng_key: Any = None,
        length: int,
        reverse: bool,
        **_: Any,
    ) -> ScanResult:
        msg = self.msg
        name = _name(f)
        spec = LoopSpec(
            name=name,
            length=length,
            reverse=reverse,
            handled_by=msg.handled_by,
            frames=tuple(msg.cond_indep_stack),
            parent=active_context().get(),
            record=True,
        )
        result, skeletons = _run(f, init, xs, rng_key, spec)
        sites = stacked_sites(skeletons, result.payloads, length, name)
        return ScanResult(result.carry, result.ys, sites)


def scan(
    f: Callable[[C, Any], tuple[C, Y]],
    init: C,
    xs: Any,
    length: int | None = None,
    reverse: bool = False,
    history: int = 1,
) -> tuple[C, Y]:
    """Scan ``f`` over the leading axis of ``xs`` (as :func:`jax.lax.scan`), with the sample,
    deterministic, param and mutable sites of ``f`` visible to the handlers outside.

    Handlers outside act on the body as they would on the unrolled loop: ``seed`` gives
    the loop one key, split once per step; ``substitute``, ``condition`` and ``replay``
    reach into the body by site name (names as seen where the handler stands, so
    ``scope``d names match), with values stacked over time (``value[t]`` at step ``t``),
    per step (the same every step), or shorter than the loop (the remaining steps are
    drawn: forecasting); ``do``, ``uncondition`` and ``reparam`` act inside the body;
    enclosing ``plate``s vectorise the body. After the loop every body site is sent once
    more, stacked over a leading time dim, so ``trace``, ``mask``, ``scale``,
    ``infer_config`` and ``block`` act on the stacked sites. Scans nest. The time dim is
    not a plate.

    Outside ``jax.jit`` the compiled loop is cached on the model's structure, so calling
    a seeded model again does not recompile it (see :func:`scan_cache_info`).

    Args:
        f: the body, ``(carry, x) -> (new_carry, y)``; the carry keeps its structure,
            shapes and dtypes.
        init: the initial carry (a pytree).
        xs: the values to scan over along their leading axis (a pytree, or ``None``).
        length: the number of steps; needed when ``xs`` has no arrays.
        reverse: scan from the last element to the first (outputs keep ``xs``'s order).
        history: the number of previous steps a step depends on, for enumeration
            (plait-enum); the plain loop ignores it.

    Returns:
        ``(final_carry, ys)``, ``ys`` stacking the outputs along a leading time axis.

    Raises:
        PlaitError: ``xs`` leaves disagree on their length, ``length`` disagrees with
            ``xs``, or the body changes the carry's structure, shape or dtype.
        SiteError: a value given to a body site does not fit the loop (longer than the
            loop, or with the wrong number of dims).

    Example:
        >>> import numpy as np
        >>> import numpyro.distributions as dist
        >>> import plait
        >>> import plait.handlers
        >>> from plait.control_flow import scan
        >>>
        >>> def gaussian_hmm(y=None, T=10):
        ...     def transition(x_prev, y_curr):
        ...         x_curr = plait.sample('x', dist.Normal(x_prev, 1))
        ...         y_curr = plait.sample('y', dist.Normal(x_curr, 1), obs=y_curr)
        ...         return x_curr, (x_curr, y_curr)
        ...
        ...     x0 = plait.sample('x_0', dist.Normal(0, 1))
        ...     _, (x, y) = scan(transition, x0, y, length=T)
        ...     return (x, y)
        >>>
        >>> # here we do some quick tests
        >>> with plait.handlers.seed(rng_seed=0):
        ...     x, y = gaussian_hmm(np.arange(10.))
        >>> assert x.shape == (10,) and y.shape == (10,)
        >>> assert np.all(y == np.arange(10))
        >>>
        >>> with plait.handlers.seed(rng_seed=0):  # generative
        ...     x, y = gaussian_hmm()
        >>> assert x.shape == (10,) and y.shape == (10,)
    """
    name = _name(f)
    if isinstance(history, bool) or not isinstance(history, int) or history < 0:
        raise PlaitError(f"scan '{name}': history must be an int >= 0, got {history!r}.")
    xs, length = _check_inputs(name, xs, length)
    reverse = bool(reverse)
    if not current_stack():
        spec = LoopSpec(name, length, reverse, (), (), None, record=False)
        result, _ = _run(f, init, xs, None, spec)
        return result.carry, result.ys
    msg = Message(
        type="control_flow",
        args=(f, init, xs),
        kwargs={"rng_key": None, "history": history, "length": length, "reverse": reverse},
    )
    msg.fn = _Runner(msg)
    apply_stack(msg)
    value = msg.value
    if not isinstance(value, ScanResult):
        raise PlaitError(
            f"scan '{name}': a handler set the value of the scan's control_flow message to "
            f"a {type(value).__name__}; it must be a plait.control_flow.ScanResult."
        )
    _check_lift(name, value.sites, msg.handled_by)
    _reemit(value.sites, msg.handled_by)
    return value.carry, value.ys


def _reemit(sites: dict[str, Message], handled_by: tuple[Any, ...]) -> None:
    """Send the stacked sites through the stack, without the handlers that acted inside."""
    inside = [h for h in handled_by if acts_inside(h)]
    with isolated_stack(without=inside):
        for site in sites.values():
            apply_stack(site)


def _check_lift(name: str, sites: dict[str, Message], handled_by: tuple[Any, ...]) -> None:
    """``lift`` outside a scan would turn a body param, stacked over time, into one sample
    site with a prior term per step; the unrolled loop draws the param once and reuses it.
    Neither can be had from the stacked site, so say so."""
    for k, handler in enumerate(handled_by):
        if not isinstance(handler, lift):
            continue
        for site in sites.values():
            if site.type != "param" or site.name is None:
                continue
            seen = site.name
            for inner in reversed(handled_by[k + 1 :]):
                seen = inner.rename_site(seen)
            prior = handler.prior
            if isinstance(prior, Mapping):
                prior = prior.get(seen)
            if prior is not None:
                raise SiteError(
                    seen,
                    f"lift: param '{seen}' is declared inside the body of scan '{name}', so "
                    "after the loop it is a series stacked over time, and lifting it there "
                    "would not draw it once as the unrolled loop does. Declare the param "
                    "outside the scan (and close over it or pass it in the carry), or apply "
                    "lift inside the body (a fresh draw per step).",
                )
