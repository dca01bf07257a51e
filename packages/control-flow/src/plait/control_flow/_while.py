"""``while_loop`` and ``fori_loop``: loops over observed data whose log density accumulates.

A ``fori_loop`` with Python-int bounds is a ``scan`` over the index (as ``lax.fori_loop``
lowers to a scan when its trip count is static): its sites are stacked over iterations and
everything ``scan`` supports applies, latent sites included. With traced bounds, and in
``while_loop``, the number of iterations is unknown when the model is traced, so sites
cannot be stacked; instead every sample site of the body must be observed (``obs=``,
``condition``), and each site's log density is summed over the iterations inside the loop
(``_accumulate.py``, differentiable in reverse mode). After the loop each body site is sent
once, as an observed site carrying that sum (a :class:`plait.Unit` over the site's batch
shape), marked :data:`~plait.control_flow.plugin_api.ACCUMULATED`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
from jax import lax

from plait import (
    Message,
    Messenger,
    PlateFrame,
    Stash,
    Trace,
    Unit,
    apply_stack,
    current_stack,
    isolated_stack,
    site_log_prob,
)
from plait.control_flow._accumulate import Program, accumulate
from plait.control_flow._body import check_carry
from plait.control_flow._errors import ControlFlowTypeError
from plait.control_flow._loop import _strong
from plait.control_flow._scan import scan
from plait.control_flow._sites import ACCUMULATED, PRIMITIVE, LoopSite
from plait.control_flow._step import ScanContext, ScanStep, active_context, mark_sites
from plait.errors import PlaitError, SiteError
from plait.handlers import seed, trace

__all__ = ["fori_loop", "while_loop"]

C = TypeVar("C")


def _name(f: Callable[..., Any]) -> str:
    return str(getattr(f, "__name__", type(f).__name__))


class LoopStep(ScanStep):
    """One iteration of a loop of unknown length: a value stacked over iterations gives
    iteration ``i`` its ``value[i]`` (JAX indexing: clamped past the end)."""

    @property
    def label(self) -> str:
        return f"while_loop '{self.context.name}'"

    def _select_leaf(
        self, msg: Message, value: Any, site_shape: Sequence[int], inner: tuple[int, ...]
    ) -> Any:
        level_ndim = len(inner) + len(site_shape)
        ndim = jnp.ndim(value)
        if ndim <= level_ndim:
            return value
        if ndim > level_ndim + 1:
            raise SiteError(
                msg.name,
                f"site '{msg.name}' inside {self.label} got a value of shape "
                f"{tuple(jnp.shape(value))}; expected {(*inner, *site_shape)} (every iteration) "
                "or one more leading dim (one value per iteration).",
            )
        return lax.dynamic_index_in_dim(jnp.asarray(value), self.context.index, keepdims=False)


class _Spec(NamedTuple):
    name: str
    handled_by: tuple[Messenger[Any, Any], ...]
    frames: tuple[PlateFrame, ...]
    parent: ScanContext | None


class _SiteInfo(NamedTuple):
    """What a body site is, apart from its per-iteration log density."""

    name: str
    frames: tuple[PlateFrame, ...]
    scale: Any  # a Python number or None: the same every iteration
    folded: bool  # the scale is traced: folded into the summed log density
    infer: dict[str, Any]
    distribution: str


def _distribution_name(fn: Any) -> str:
    while hasattr(fn, "base_dist") and type(fn).__name__ in (
        "Independent",
        "ExpandedDistribution",
        "MaskedDistribution",
    ):
        fn = fn.base_dist
    return type(fn).__name__


def _log_densities(tr: Trace, label: str) -> tuple[list[_SiteInfo], list[Any]]:
    """Each body site's log density (unscaled unless its scale is traced), with checks."""
    infos: list[_SiteInfo] = []
    lps: list[Any] = []
    for name, site in tr.items():
        if site.type in ("deterministic", "param", "mutable"):
            raise SiteError(
                name,
                f"{site.type} site '{name}' inside {label}: a loop whose number of "
                "iterations is unknown when the model is traced cannot record a value per "
                "iteration. Use scan (or fori_loop with Python-int bounds), which stacks "
                "them over time, or compute it outside the loop.",
            )
        if site.type != "sample":
            continue
        if not site.is_observed:
            raise SiteError(
                name,
                f"site '{name}' inside {label} is latent; a loop whose number of iterations "
                "is unknown when the model is traced can only sum the log densities of "
                "observed sites. Write the loop with plait.control_flow.scan (or fori_loop "
                "with Python-int bounds), which stacks latent sites over time.",
            )
        fn = site.fn
        lp = site_log_prob(site, scaled=False)
        value_shape = tuple(jnp.shape(site.value))
        event = len(fn.event_shape)
        value_batch = value_shape[: len(value_shape) - event] if event else value_shape
        lp = jnp.broadcast_to(
            lp, jnp.broadcast_shapes(tuple(fn.batch_shape), value_batch, lp.shape)
        )
        scale = site.scale
        folded = not (scale is None or isinstance(scale, int | float))
        if folded:
            lp = lp * scale
        infos.append(
            _SiteInfo(
                name,
                tuple(site.cond_indep_stack),
                None if folded else scale,
                folded,
                dict(site.infer),
                _distribution_name(fn),
            )
        )
        lps.append(lp)
    return infos, lps


def _run_body(
    body: Callable[[Any, Any], Any],
    spec: _Spec,
    i: Any,
    key: Any,
    carry: Any,
) -> tuple[Any, Trace]:
    context = ScanContext(spec.name, -1, i, spec.handled_by, spec.frames, spec.parent)
    step = LoopStep(context)
    token = active_context().set(context)
    try:
        with ExitStack() as stack:
            stack.enter_context(isolated_stack())
            recorded: Trace = stack.enter_context(trace())
            for handler in spec.handled_by:
                if handler.acts_inside_loops():
                    form = handler.for_control_flow(step)
                    if form is not None:
                        stack.enter_context(form)
            if key is not None:
                stack.enter_context(seed(rng_seed=key))
            stack.enter_context(mark_sites(context))
            new_carry = body(i, carry)
    except PlaitError as e:
        e.add_note(f"(raised while tracing the body of {step.label})")
        raise
    finally:
        active_context().reset(token)
    return new_carry, recorded


def _loop(
    cond_fun: Callable[[Any, Any], Any],
    body: Callable[[Any, Any], Any],
    start: Any,
    init: Any,
    spec: _Spec,
    rng_key: Any,
) -> tuple[Any, dict[str, Message]]:
    label = f"while_loop '{spec.name}'"
    init = _strong(init)
    init_leaves, carry_def = jax.tree_util.tree_flatten(init)
    found: dict[str, Any] = {}

    def body_leaves(i: Any, *args: Any) -> list[Any]:
        key = args[0] if rng_key is not None else None
        leaves = args[1:] if rng_key is not None else args
        carry = jax.tree_util.tree_unflatten(carry_def, list(leaves))
        new_carry, tr = _run_body(body, spec, i, key, carry)
        check_carry(spec.name, carry, new_carry)
        new_carry = jax.tree_util.tree_map(
            lambda a, b: lax.convert_element_type(b, jnp.result_type(a)), carry, new_carry
        )
        infos, lps = _log_densities(tr, label)
        found["infos"] = infos
        return [*jax.tree_util.tree_leaves(new_carry), *lps]

    def cond_leaves(i: Any, *leaves: Any) -> Any:
        carry = jax.tree_util.tree_unflatten(carry_def, list(leaves))
        with isolated_stack(), _no_sites(label):
            out = cond_fun(i, carry)
        if jnp.shape(out) != () or not jnp.issubdtype(jnp.result_type(out), jnp.bool_):
            raise ControlFlowTypeError(
                f"{label}: cond_fun must return a bool scalar, got {jnp.result_type(out)}"
                f"{list(jnp.shape(out))}."
            )
        return out

    i_aval = jax.ShapeDtypeStruct((), jnp.int32)  # type: ignore[no-untyped-call]
    keys = [] if rng_key is None else [rng_key]
    body_closed, out_shapes = jax.make_jaxpr(body_leaves, return_shape=True)(
        i_aval, *keys, *init_leaves
    )
    cond_closed = jax.make_jaxpr(cond_leaves)(i_aval, *init_leaves)
    n = len(init_leaves)
    totals = tuple(
        jax.ShapeDtypeStruct(s.shape, s.dtype)  # type: ignore[no-untyped-call]
        for s in out_shapes[n:]
    )
    program = Program(cond_closed.jaxpr, body_closed.jaxpr, n, rng_key is not None, totals)
    carry_leaves, sums = accumulate(
        program, cond_closed.consts, body_closed.consts, start, rng_key, init_leaves
    )
    sites: dict[str, Message] = {}
    for info, total in zip(found["infos"], sums, strict=True):
        sites[info.name] = Message(
            type="sample",
            name=info.name,
            fn=Unit(total),
            value=jnp.zeros((*jnp.shape(total), 0), jnp.result_type(total)),
            scale=info.scale,
            is_observed=True,
            cond_indep_stack=list(info.frames),
            infer=info.infer,  # type: ignore[arg-type]
            stash=Stash({ACCUMULATED: LoopSite(spec.name, info.distribution)}),
        )
    return jax.tree_util.tree_unflatten(carry_def, carry_leaves), sites


class _no_sites(Messenger[..., Any]):
    def __init__(self, label: str) -> None:
        self.label = label
        super().__init__()

    def process_message(self, msg: Message) -> None:
        if msg.name is not None:
            raise SiteError(
                msg.name,
                f"{self.label}: cond_fun has a {msg.type} site '{msg.name}'; the loop's "
                "condition must be a plain function of the carry. Move the site into body_fun.",
            )


def _send(
    cond_fun: Callable[[Any, Any], Any],
    body: Callable[[Any, Any], Any],
    start: Any,
    init: Any,
    name: str,
) -> Any:
    msg = Message(type="control_flow", kwargs={"rng_key": None})
    msg.stash[PRIMITIVE] = "while_loop"

    def run(rng_key: Any = None) -> tuple[Any, dict[str, Message]]:
        spec = _Spec(name, msg.handled_by, tuple(msg.cond_indep_stack), active_context().get())
        return _loop(cond_fun, body, start, init, spec, rng_key)

    msg.fn = run
    apply_stack(msg)
    carry, sites = msg.value
    inside = [h for h in msg.handled_by if h.acts_inside_loops()]
    with isolated_stack(without=inside):
        for site in sites.values():
            apply_stack(site)
    return carry


def while_loop(cond_fun: Callable[[C], Any], body_fun: Callable[[C], C], init_val: C) -> C:
    """``body_fun`` applied while ``cond_fun`` holds (as :func:`jax.lax.while_loop`), with
    the observed sites of ``body_fun`` visible to the handlers outside: their log densities
    are summed over the iterations, so ``log_density``, NUTS and SVI work on the model.

    The number of iterations is unknown when the model is traced, so nothing can be stored
    per iteration: every sample site of the body must be observed (``obs=...``, or given
    by ``condition`` outside; a value stacked over iterations gives iteration ``i`` its
    ``value[i]``), and deterministic and param sites are not allowed. After the loop each
    body site is sent once, observed, carrying its summed log density (a
    :class:`plait.Unit` over its batch shape), so ``trace``, ``mask``, ``scale`` and
    ``block`` act on it; ``condition``, ``substitute``, ``plate`` and the other handlers
    that act inside control flow act on every iteration. The sum is differentiable in
    reverse mode (``jax.grad``; not ``jax.jvp``).

    Args:
        cond_fun: ``carry -> bool scalar``, with no sites.
        body_fun: ``carry -> new_carry`` (same structure, shapes and dtypes).
        init_val: the initial carry.

    Returns:
        The final carry.

    Raises:
        SiteError: a body site is latent, deterministic or a param (use ``scan``).

    Example:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.control_flow import while_loop
        >>> from plait.handlers import substitute, trace
        >>> data = jnp.array([0.5, 1.5, 2.5, 9.0])
        >>> def model():  # observations up to the first one above 2
        ...     mu = sample("mu", dist.Normal(0.0, 5.0))
        ...     def body(i):
        ...         sample("y", dist.Normal(mu, 1.0), obs=data[i])
        ...         return i + 1
        ...     return while_loop(lambda i: data[i] <= 2.0, body, 0)
        >>> tr = trace(substitute(model, data={"mu": 1.0})).get_trace()
        >>> summed = tr["y"].fn.log_prob(tr["y"].value)
        >>> bool(summed == dist.Normal(1.0, 1.0).log_prob(data[:2]).sum())
        True
    """
    name = _name(body_fun)
    if not current_stack():
        return lax.while_loop(cond_fun, body_fun, init_val)
    return _send(  # type: ignore[no-any-return]
        lambda i, c: cond_fun(c), lambda i, c: body_fun(c), 0, init_val, name
    )


def _static_int(x: Any) -> int | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, jax.core.Tracer):
        return None
    try:
        array = jnp.asarray(x)
    except TypeError:
        return None
    if array.shape == () and jnp.issubdtype(array.dtype, jnp.integer):
        return int(array)
    return None


def fori_loop(lower: Any, upper: Any, body_fun: Callable[[Any, C], C], init_val: C) -> C:
    """``body_fun(i, val)`` for ``i`` from ``lower`` to ``upper - 1`` (as
    :func:`jax.lax.fori_loop`), with the sites of ``body_fun`` visible to the handlers
    outside.

    With concrete int bounds the loop is a :func:`~plait.control_flow.scan` over the index
    (as ``lax.fori_loop`` becomes a scan when its trip count is static): every site is
    stacked over iterations, latent sites included, and every handler acts as on ``scan``.
    With traced bounds it is a :func:`while_loop`: only observed sample sites, whose log
    densities are summed over the iterations.

    Args:
        lower: the first index.
        upper: one past the last index.
        body_fun: ``(i, val) -> new_val``.
        init_val: the initial value.

    Returns:
        The final value.

    Example:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.control_flow import fori_loop
        >>> from plait.handlers import seed, trace
        >>> def walk(n):
        ...     def body(i, x):
        ...         return sample("x", dist.Normal(x, 1.0))
        ...     return fori_loop(0, n, body, 0.0)
        >>> trace(seed(walk, rng_seed=0)).get_trace(4)["x"].value.shape  # stacked: a scan
        (4,)
    """
    name = _name(body_fun)
    lo, hi = _static_int(lower), _static_int(upper)
    if lo is not None and hi is not None:

        def step(carry: Any, i: Any) -> tuple[Any, None]:
            return body_fun(i, carry), None

        step.__name__ = name
        carry, _ = scan(step, init_val, jnp.arange(lo, max(hi, lo), dtype=jnp.int32))
        return carry  # type: ignore[no-any-return]
    if not current_stack():
        return lax.fori_loop(lower, upper, body_fun, init_val)  # type: ignore[no-any-return]
    bound = jnp.asarray(upper, jnp.int32)
    return _send(  # type: ignore[no-any-return]
        lambda i, c: i < bound, body_fun, jnp.asarray(lower, jnp.int32), init_val, name
    )
