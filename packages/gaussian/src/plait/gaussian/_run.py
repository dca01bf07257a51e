"""Running a scan whose body has a collapsed chain, in one of three modes.

- ``"density"`` (a log density, or any run that is not a prediction): the chain's sites
  are hidden and their values are placeholders (zeros); the Kalman filter's marginal
  log-likelihood is sent after the loop as one factor site, named after the chain's first
  site (as NumPyro's ``collapse`` names its factor).
- ``"smooth"``: as ``"density"``, and the smoothed moments of every collapsed site are
  recorded (:func:`plait.gaussian.smooth`).
- ``"predict"`` (under ``seed`` with the log density masked out, as
  :class:`plait.infer.Predictive` runs a model): one path is drawn from the chain's
  posterior (forward-filter backward-sample) and given to the chain's sites as values,
  so the scan records them as if they had been sampled; the leaves are then drawn by
  the loop itself, given that path.

Everything outside the chain runs as it would without ``collapse``: the body, with the
chain's sites hidden (or given their drawn values), is passed on to the next handler
that runs scans (plait-enum's enumeration, or the plain loop).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Literal, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
from jax import Array, random

from plait import Message, Messenger, Unit
from plait.control_flow.plugin_api import ScanCall, ScanResult
from plait.gaussian._dists import gaussian_kind, sample_dtype
from plait.gaussian._evaluate import ChainAxes, evaluate, step_sequence
from plait.gaussian._kalman_inputs import Layout, kalman_inputs, layout
from plait.gaussian._step import expected_shape
from plait.gaussian._structure import ChainPlan
from plait.kernels import KalmanStrategy, kalman_filter, kalman_sample, kalman_smoother

__all__ = ["Marginal", "Mode", "SMOOTHED", "run_chain"]

Mode = Literal["density", "smooth", "predict"]
T = TypeVar("T")


class Marginal(NamedTuple):
    """The posterior marginal of a collapsed site given the observations.

    Attributes:
        mean: ``E[x]``, the site's shape (stacked over time for a site of a ``scan``
            body: ``(T, *shape)``).
        covariance: for a ``Normal`` site, the variance of each element (the mean's
            shape); for a ``MultivariateNormal`` site, the covariance of each event
            (``mean.shape + (d,)``).

    Example:
        >>> import jax.numpy as jnp
        >>> from plait.gaussian import Marginal
        >>> m = Marginal(jnp.zeros((3, 2)), jnp.broadcast_to(jnp.eye(2), (3, 2, 2)))
        >>> m.mean.shape, m.covariance.shape
        ((3, 2), (3, 2, 2))
    """

    mean: Array
    covariance: Array


SMOOTHED: ContextVar[dict[str, Marginal] | None] = ContextVar(
    "plait_gaussian_smoothed", default=None
)
"""Where :func:`plait.gaussian.smooth` collects the marginals (None: not smoothing)."""

_KEY_SALT = 0x9A55


class _hide(Messenger[..., Any]):
    """Innermost in the body: the chain's sites hidden (zeros) or given their drawn values."""

    def __init__(
        self, plan: ChainPlan, frames: tuple[Any, ...], drawn: dict[str, Any] | None
    ) -> None:
        self.latent = {s.inner or s.name for s in plan.chain}
        self.leaves = {s.inner or s.name for s in plan.leaves}
        self.emissions = {s.inner or s.name for s in plan.emissions}
        self.hidden = set(plan.hidden)
        self.frames = frames
        self.drawn = drawn
        super().__init__()

    def process_sample(self, msg: Message) -> None:
        name = msg.name or ""
        if self.drawn is not None:
            if name in self.latent and msg.value is None:
                msg.value = jnp.reshape(self.drawn[name], expected_shape(msg, self.frames))
            return
        if name in self.latent or name in self.leaves:
            if msg.value is None:
                shape = expected_shape(msg, self.frames)
                dtype = sample_dtype(msg.fn)
                msg.value = jnp.zeros(shape, dtype)
            msg.stop = True
        elif name in self.emissions:
            msg.stop = True

    def process_deterministic(self, msg: Message) -> None:
        if self.drawn is None and (msg.name or "") in self.hidden:
            msg.stop = True


def _reduced_call(
    call: ScanCall, plan: ChainPlan, drawn: dict[str, Array] | None, init: Any
) -> ScanCall:
    frames = tuple(call.plates)
    body = call.body

    def reduced(carry: Any, x_and_drawn: Any) -> Any:
        x, drawn_t = x_and_drawn
        with _hide(plan, frames, drawn_t):
            return body(carry, x)

    reduced.__name__ = call.name
    return call.replace(body=reduced, xs=(call.xs, drawn), init=init)


def _chain_dtype(plan: ChainPlan) -> Any:
    avals = plan.traced.closed.in_avals
    positions = [*plan.latent_carry, *plan.chain_inputs]
    return jnp.result_type(*[avals[p].dtype for p in positions]) if positions else jnp.float32  # type: ignore[attr-defined]


def _site_values(
    plan: ChainPlan, axes: ChainAxes, lay: Layout, states: Array, reverse: bool
) -> dict[str, Array]:
    """Each chain site's values from the Kalman states after every step ``(B, T, n)``, in
    ``xs`` order, keyed by the site's name in the body (as it is first seen)."""
    out: dict[str, Array] = {}
    start = 0
    avals = plan.traced.closed.in_avals
    for s, p, size in zip(plan.chain, plan.chain_inputs, lay.site_sizes, strict=True):
        index = lay.z_index[start : start + size]
        start += size
        values = states[..., index]  # (B, T, d)
        shape = tuple(avals[p].shape)  # type: ignore[attr-defined]
        name = f"site:{s.name}"

        def one_step(v: Array, name: str = name, shape: tuple[int, ...] = shape) -> Array:
            return axes.from_chain(v, name, shape)

        stacked = jax.vmap(one_step, 1)(values)
        out[s.inner or s.name] = stacked[::-1] if reverse else stacked
    return out


def _initial_values(
    plan: ChainPlan, axes: ChainAxes, lay: Layout, state: Array, init: list[Any]
) -> dict[int, Array]:
    out: dict[int, Array] = {}
    start = 0
    for j, size in zip(plan.latent_carry, lay.carry_sizes, strict=True):
        if j in plan.initial:
            shape = tuple(jnp.shape(init[j]))
            out[j] = axes.from_chain(state[..., start : start + size], f"carry:{j}", shape)
        start += size
    return out


def _marginals(
    plan: ChainPlan,
    axes: ChainAxes,
    lay: Layout,
    means: tuple[Array, Array],
    covs: tuple[Array, Array],
    init: list[Any],
    reverse: bool,
) -> dict[str, Marginal]:
    """Per collapsed site, its smoothed mean and (co)variances, from the state moments."""
    out: dict[str, Marginal] = {}
    avals = plan.traced.closed.in_avals

    def pick(
        index: Any, kind: str | None, shape: tuple[int, ...], name: str, m: Array, c: Array
    ) -> Marginal:
        index = jnp.asarray(index)
        mean = axes.from_chain(m[..., index], name, shape)
        block = c[..., index[:, None], index[None, :]]  # (B, k, k)
        if kind == "tril":
            d = shape[-1]
            count = index.shape[0] // d
            blocks = jnp.reshape(block, (block.shape[0], count, d, count, d))
            diag = jnp.moveaxis(jnp.diagonal(blocks, axis1=1, axis2=3), -1, 1)  # (B, count, d, d)
            cov = axes.from_chain(jnp.reshape(diag, (diag.shape[0], -1)), name, (*shape, d))
        else:
            cov = axes.from_chain(jnp.diagonal(block, axis1=-2, axis2=-1), name, shape)
        return Marginal(mean, cov)

    start = 0
    for s, p, size in zip(plan.chain, plan.chain_inputs, lay.site_sizes, strict=True):
        index = lay.z_index[start : start + size]
        start += size
        shape = tuple(avals[p].shape)  # type: ignore[attr-defined]

        def one_step(
            m: Array, c: Array, s: Any = s, index: Any = index, shape: tuple[int, ...] = shape
        ) -> Marginal:
            return pick(index, s.gaussian, shape, f"site:{s.name}", m, c)

        marginal = jax.vmap(one_step, (1, 1))(means[1], covs[1])
        if reverse:
            marginal = Marginal(marginal.mean[::-1], marginal.covariance[::-1])
        out[s.name] = marginal
    start = 0
    for j, size in zip(plan.latent_carry, lay.carry_sizes, strict=True):
        site = plan.initial.get(j)
        if site is not None:
            positions = jnp.arange(start, start + size)
            kind = gaussian_kind(site.fn)
            shape = tuple(jnp.shape(init[j]))
            out[site.name] = pick(
                positions, None if kind is None else kind[0], shape, f"carry:{j}", means[0], covs[0]
            )
        start += size
    return out


def _batched(result: T, batch: int) -> T:
    """A kernel's result with the chain axis put back when it was dropped."""
    if batch != 1:
        return result
    return jax.tree_util.tree_map(lambda a: a[None], result)  # type: ignore[no-any-return]


def run_chain(
    call: ScanCall, proceed: Callable[[ScanCall], ScanResult], plan: ChainPlan, mode: Mode
) -> ScanResult:
    """Run ``call`` with ``plan``'s chain integrated out (see the module docstring)."""
    axes = ChainAxes((), {})
    init = jax.tree_util.tree_leaves(call.init)
    init_def = jax.tree_util.tree_structure(call.init)
    full = mode != "density"
    lay = layout(plan, axes.batch, full)
    strategy: KalmanStrategy = plan.strategy  # type: ignore[assignment]
    log_lik: Array | None = None
    drawn: dict[str, Array] | None = None
    new_init = list(init)
    if lay.size:
        seq = step_sequence(plan, call)
        pieces = evaluate(plan, axes, seq)
        dtype = _chain_dtype(plan)
        inputs = kalman_inputs(plan, axes, lay, pieces, init, call.length, dtype)
        args: tuple[Any, ...] = (
            inputs.init_mean,
            inputs.init_scale_tril,
            inputs.transition,
            inputs.emission,
            inputs.observations,
        )
        if axes.batch == 1:  # the kernels batch only what has batch dims: drop it
            args = jax.tree_util.tree_map(lambda a: a[0], args)
        if mode == "predict":
            key = random.fold_in(call.rng_key, _KEY_SALT)
            path = _batched(kalman_sample(key, *args, strategy=strategy), axes.batch)
            drawn = _site_values(plan, axes, lay, path.states, call.reverse)
            for j, value in _initial_values(plan, axes, lay, path.initial_state, init).items():
                new_init[j] = value
        elif mode == "smooth":
            post = _batched(kalman_smoother(*args, strategy=strategy), axes.batch)
            log_lik = post.log_normalizer + inputs.correction
            collected = SMOOTHED.get()
            if collected is not None:
                means = (post.initial_mean, post.smoothed_means)
                covs = (post.initial_covariance, post.smoothed_covariances)
                collected.update(_marginals(plan, axes, lay, means, covs, init, call.reverse))
        else:
            filtered = _batched(kalman_filter(*args, strategy=strategy), axes.batch)
            log_lik = filtered.log_normalizer + inputs.correction
    if mode == "predict" and drawn is None:
        drawn = {}
    reduced = _reduced_call(call, plan, drawn, jax.tree_util.tree_unflatten(init_def, new_init))
    result = proceed(reduced)
    sites: dict[str, Message] = {}
    if mode == "predict":
        for j, site in plan.initial.items():
            sites[site.name] = Message(
                type="sample",
                name=site.name,
                fn=site.fn,
                value=new_init[j],
                scale=site.scale,
                cond_indep_stack=list(site.frames),
                infer=site.infer,
            )
    sites.update(result.sites)
    if log_lik is not None:
        first = [*(s.name for s in plan.initial.values()), *(s.name for s in plan.chain)]
        unit = Unit(jnp.reshape(log_lik, axes.sizes))
        sites[first[0]] = Message(
            type="sample",
            name=first[0],
            fn=unit,
            value=unit.sample(),
            is_observed=True,
            scale=None if plan.scale == 1.0 else plan.scale,
            infer={"is_auxiliary": True},
        )
    return ScanResult(result.carry, result.ys, sites)
