"""Stochastic variational inference with an optax optimiser."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array, lax, random
from numpyro.distributions import constraints
from numpyro.distributions.transforms import Transform

from plait import Trace
from plait.handlers import replay, seed, trace
from plait.infer._args import StaticArgs, merge_args, split_args
from plait.infer._elbo import ELBO
from plait.infer._log_density import site_transform
from plait.infer._progress import chunk_plan, progress
from plait.infer._util import _as_key

__all__ = ["SVI", "SVIRunResult", "SVIState"]


class SVIState(NamedTuple):
    """The state of SVI: unconstrained ``params``, the optimiser state and the key."""

    params: dict[str, Array]
    optim_state: Any
    rng_key: Array


class SVIRunResult(NamedTuple):
    """What :meth:`SVI.run` returns: constrained ``params``, the last ``state`` and the
    loss at every step."""

    params: dict[str, Array]
    state: SVIState
    losses: Array


class SVI:
    """Fit the ``param`` sites of ``model`` and ``guide`` by minimising ``loss`` with an
    optax optimiser.

    Params are optimised on the unconstrained space (``biject_to(constraint)``).
    :meth:`update` is compiled once per argument shapes; :meth:`run` runs the steps in
    compiled chunks (a progress bar between them), cached on this object, so a second
    ``run`` with the same settings compiles nothing.

    Args:
        model: the model.
        guide: the guide (a function, or an autoguide such as ``AutoNormal(model)``).
        optimizer: an ``optax.GradientTransformation``, e.g. ``optax.adam(1e-2)``.
        loss: an ELBO, e.g. ``Trace_ELBO()`` or ``TraceEnum_ELBO()``.

    Example:
        >>> import jax, optax
        >>> import numpyro.distributions as dist
        >>> from plait import param, sample
        >>> from plait.infer import SVI, Trace_ELBO
        >>> def model():
        ...     sample("x", dist.Normal(3.0, 1.0))
        >>> def guide():
        ...     sample("x", dist.Normal(param("loc", 0.0), 1.0))
        >>> svi = SVI(model, guide, optax.adam(0.1), Trace_ELBO())
        >>> result = svi.run(jax.random.key(0), 300, progress_bar=False)
        >>> round(float(result.params["loc"]), 0)
        3.0
    """

    def __init__(
        self,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        optimizer: optax.GradientTransformation,
        loss: ELBO,
    ) -> None:
        if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
            raise TypeError(
                f"SVI needs an optax optimiser (optax.adam(1e-3), ...), got "
                f"{type(optimizer).__name__}."
            )
        self.model = model
        self.guide = guide
        self.optimizer = optimizer
        self.loss = loss
        self._transforms: dict[str, Transform] = {}
        self._update = jax.jit(self._step, static_argnames=("static", "stable"))
        self._evaluate = jax.jit(self._loss_at, static_argnames=("static",))
        self._constrain = jax.jit(self._constrained)
        self._chunk = jax.jit(
            self._run_chunk, static_argnames=("static", "length", "num_steps", "stable")
        )

    # -- set-up ------------------------------------------------------------------------
    def init(
        self,
        rng_key: Array | int,
        *args: Any,
        init_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> SVIState:
        """Trace the guide and the model once and initialise the params and optimiser.

        Args:
            rng_key: the key.
            *args: the model's and guide's positional arguments.
            init_params: constrained initial values for some params.
            **kwargs: their keyword arguments.
        """
        key, guide_key, model_key = random.split(_as_key(rng_key), 3)
        guide_trace = trace(seed(self.guide, guide_key)).get_trace(*args, **kwargs)
        model_trace = trace(replay(seed(self.model, model_key), trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        given = dict(init_params or {})
        params: dict[str, Array] = {}
        transforms: dict[str, Transform] = {}
        for tr in (guide_trace, model_trace):  # the model's init wins, as in NumPyro
            params.update(_unconstrained_params(tr, given, transforms))
        self._transforms = transforms
        return SVIState(params, self.optimizer.init(params), key)

    def get_params(self, state: SVIState) -> dict[str, Array]:
        """The constrained params of ``state``."""
        return self._constrain(state.params)  # type: ignore[no-any-return]

    def _constrained(self, params: Mapping[str, Array]) -> dict[str, Array]:
        return {k: jax.tree.map(self._transforms[k], v) for k, v in params.items()}

    # -- steps -------------------------------------------------------------------------
    def _loss_at(
        self, params: Mapping[str, Array], key: Array, dynamic: tuple[Any, ...], static: StaticArgs
    ) -> Array:
        args, kwargs = merge_args(dynamic, static)
        constrained = self._constrained(params)
        return self.loss.loss(key, constrained, self.model, self.guide, *args, **kwargs)

    def _step(
        self, state: SVIState, dynamic: tuple[Any, ...], static: StaticArgs, stable: bool
    ) -> tuple[SVIState, Array]:
        rng_key, key = random.split(state.rng_key)
        loss, grads = jax.value_and_grad(self._loss_at)(state.params, key, dynamic, static)
        updates, optim_state = self.optimizer.update(grads, state.optim_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = SVIState(params, optim_state, rng_key)
        if stable:
            # Keep the old params where the loss is not finite (only the key advances).
            ok = jnp.isfinite(loss)
            new = jax.tree_util.tree_map(
                lambda a, b: jnp.where(ok, a, b), new, state._replace(rng_key=rng_key)
            )
        return new, loss

    def update(
        self, state: SVIState, *args: Any, stable_update: bool = False, **kwargs: Any
    ) -> tuple[SVIState, Array]:
        """One optimisation step (compiled): the new state and the loss before it."""
        dynamic, static = split_args(args, kwargs)
        return self._update(state, dynamic, static=static, stable=stable_update)  # type: ignore[no-any-return,unused-ignore]

    def evaluate(self, state: SVIState, *args: Any, **kwargs: Any) -> Array:
        """The loss at ``state`` (compiled), with the state's key."""
        dynamic, static = split_args(args, kwargs)
        return self._evaluate(state.params, state.rng_key, dynamic, static=static)  # type: ignore[no-any-return]

    def _run_chunk(
        self,
        state: SVIState,
        start: Array,
        dynamic: tuple[Any, ...],
        static: StaticArgs,
        length: int,
        num_steps: int | None,
        stable: bool,
    ) -> tuple[SVIState, Array]:
        def body(s: SVIState, i: Array) -> tuple[SVIState, Array]:
            if num_steps is None:
                return self._step(s, dynamic, static, stable)
            return lax.cond(  # type: ignore[no-any-return]
                start + i < num_steps,
                lambda s: self._step(s, dynamic, static, stable),
                lambda s: (s, jnp.zeros((), _loss_dtype(s))),
                s,
            )

        return lax.scan(body, state, jnp.arange(length))  # type: ignore[no-any-return,unused-ignore]

    def run(
        self,
        rng_key: Array | int,
        num_steps: int,
        *args: Any,
        progress_bar: bool = True,
        stable_update: bool = False,
        init_state: SVIState | None = None,
        init_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> SVIRunResult:
        """Run ``num_steps`` optimisation steps from a fresh :meth:`init` (or
        ``init_state``).

        Args:
            rng_key: the key.
            num_steps: the number of steps.
            *args: the model's and guide's positional arguments.
            progress_bar: show a tqdm bar with the running loss.
            stable_update: skip steps whose loss is not finite.
            init_state: continue from this state instead of initialising.
            init_params: constrained initial values for some params.
            **kwargs: their keyword arguments.
        """
        if init_state is None or not self._transforms:
            # Resuming on a fresh SVI still needs the params' transforms from one trace.
            fresh = self.init(rng_key, *args, init_params=init_params, **kwargs)
        state = fresh if init_state is None else init_state
        dynamic, static = split_args(args, kwargs)
        plan = chunk_plan(num_steps, progress_bar)
        losses: list[np.ndarray] = []
        with progress(num_steps, "svi", progress_bar) as bar:
            for c in range(plan.num_chunks):
                start = c * plan.length
                state, chunk_losses = self._chunk(
                    state,
                    jnp.asarray(start),
                    dynamic,
                    static=static,
                    length=plan.length,
                    num_steps=num_steps if plan.padded else None,
                    stable=stable_update,
                )
                done = min(plan.length, num_steps - start)
                values = np.asarray(chunk_losses)[:done]
                losses.append(values)
                bar.update(done)
                bar.set_postfix_str(f"loss {float(np.mean(values)):.4g}")
        all_losses = jnp.asarray(np.concatenate(losses)) if losses else jnp.zeros((0,))
        return SVIRunResult(self.get_params(state), state, all_losses)


def _loss_dtype(state: SVIState) -> Any:
    leaves = jax.tree_util.tree_leaves(state.params)
    return leaves[0].dtype if leaves else jnp.float32


def _unconstrained_params(
    tr: Trace, given: Mapping[str, Any], transforms: dict[str, Transform]
) -> dict[str, Array]:
    params: dict[str, Array] = {}
    for name, site in tr.items():
        if site.type != "param":
            continue
        constraint = site.kwargs.get("constraint") or constraints.real
        transform = site_transform(site, constraint)
        transforms[name] = transform
        value = given.get(name, site.value)
        # Network params (plait.nn) are pytrees: transform them leaf by leaf.
        inverse = transform.inv
        params[name] = jax.tree.map(lambda leaf, inv=inverse: inv(jnp.asarray(leaf)), value)
    return params
