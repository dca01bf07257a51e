"""Stochastic variational inference (NumPyro's ``SVI``) on optax or ``numpyro.optim``."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax, random
from numpyro.distributions import constraints
from numpyro.distributions.transforms import Transform

from plait import Trace
from plait.handlers import replay, seed, substitute, trace
from plait.infer._args import StaticArgs, merge_args, split_args
from plait.infer._compiled import TRACER_ERRORS, compile_lowered
from plait.infer._elbo import ELBO
from plait.infer._log_density import site_transform
from plait.infer._optim import Optimizer, as_optimizer
from plait.infer._progress import chunk_plan, progress
from plait.infer._util import _as_key

__all__ = ["SVI", "SVIRunResult", "SVIState"]


class SVIState(NamedTuple):
    """The state of SVI (NumPyro's fields).

    Fields:
        optim_state: the optimiser's state; its params are on the unconstrained space
            (``svi.optim.get_params(state.optim_state)``).
        mutable_state: the values of the ``mutable`` sites, or ``None``.
        rng_key: the key of the next step.
    """

    optim_state: Any
    mutable_state: dict[str, Any] | None
    rng_key: Array


class SVIRunResult(NamedTuple):
    """What :meth:`SVI.run` returns: constrained ``params``, the last ``state`` and the
    loss at every step."""

    params: dict[str, Any]
    state: SVIState
    losses: Array


class SVI:
    """Fit the ``param`` sites of ``model`` and ``guide`` by minimising ``loss``.

    Params are optimised on the unconstrained space (``biject_to(constraint)``); a param
    that the model and the guide share takes the guide's value, as in NumPyro.
    :meth:`update`, :meth:`stable_update` and :meth:`evaluate` are compiled once per
    argument shapes (a model that reads concrete values of its array arguments, say
    ``int(jnp.max(y))``, runs them uncompiled, as NumPyro's do). :meth:`run` closes over
    its arguments as NumPyro's does, traces the steps every call and reuses the
    compiled loop of an earlier call only when the traced computation is the same.

    Args:
        model: the model.
        guide: the guide (a function, or an autoguide such as ``AutoNormal(model)``).
        optim: an optax ``GradientTransformation`` (``optax.adam(1e-2)``), a
            ``numpyro.optim`` optimiser (``numpyro.optim.Adam(1e-2)``) or a
            ``jax.example_libraries.optimizers`` triple.
        loss: an ELBO, e.g. ``Trace_ELBO()``.
        **static_kwargs: keyword arguments of the model and guide that stay fixed.

    Raises:
        TypeError: ``optim`` is not an optimiser (the message names optax).

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
        optim: Any,
        loss: ELBO,
        **static_kwargs: Any,
    ) -> None:
        self.model = model
        self.guide = guide
        self.loss = loss
        self.static_kwargs = static_kwargs
        self.optim: Optimizer = as_optimizer(optim)
        self._transforms: dict[str, Transform] = {}
        self._concrete_args = False
        self._update = jax.jit(self._step_split, static_argnames=("static", "stable", "forward"))
        self._evaluate = jax.jit(self._evaluate_split, static_argnames=("static",))
        self._get_params = jax.jit(self._params_of)

    @property
    def constrain_fn(self) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
        """Unconstrained params to constrained ones (set by :meth:`init`)."""
        return self._constrained

    # -- set-up ------------------------------------------------------------------------
    def init(
        self,
        rng_key: Array | int,
        *args: Any,
        init_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> SVIState:
        """Trace the guide and the model against it once; the initial state.

        Args:
            rng_key: the key.
            *args: the model's and guide's positional arguments.
            init_params: constrained initial values of some ``param`` sites, instead of
                their ``init_value``.
            **kwargs: their keyword arguments.
        """
        rng_key, model_seed, guide_seed = random.split(_as_key(rng_key), 3)
        kwargs = {**kwargs, **self.static_kwargs}
        model_init = seed(self.model, model_seed)
        guide_init: Callable[..., Any] = seed(self.guide, guide_seed)
        if init_params is not None:
            guide_init = substitute(guide_init, data=init_params)
        guide_trace = trace(guide_init).get_trace(*args, **kwargs)
        guide_params = {n: s.value for n, s in guide_trace.items() if s.type == "param"}
        if init_params is not None:
            guide_params.update(init_params)
        if getattr(self.loss, "multi_sample_guide", False):
            model_trace = self._multi_sample_model_trace(
                model_init, guide_trace, guide_params, args, kwargs
            )
        else:
            replayed = substitute(replay(model_init, trace=guide_trace), data=guide_params)
            model_trace = trace(replayed).get_trace(*args, **kwargs)
        params: dict[str, Any] = {}
        transforms: dict[str, Transform] = {}
        mutable_state: dict[str, Any] = {}
        # The guide's params come last, so they win over the model's (as in NumPyro).
        for site in [*model_trace.values(), *guide_trace.values()]:
            name = str(site.name)
            if site.type == "param":
                constraint = site.kwargs.get("constraint") or constraints.real
                transform = site_transform(site, constraint)
                transforms[name] = transform
                inverse = transform.inv
                params[name] = jax.tree.map(lambda v, inv=inverse: inv(jnp.asarray(v)), site.value)
            elif site.type == "mutable":
                mutable_state[name] = site.value
            elif (
                site.type == "sample"
                and not site.is_observed
                and site.fn.support.is_discrete
                and not self.loss.can_infer_discrete
                and site.infer.get("enumerate") != "parallel"
            ):
                warnings.warn(
                    f"Currently, SVI with {type(self.loss).__name__} loss does not support "
                    "models with discrete latent variables",
                    stacklevel=2,
                )
        self._transforms = transforms
        # Weak types become concrete ones, so the compiled steps see fixed dtypes.
        params, mutable = jax.tree.map(
            lambda x: lax.convert_element_type(x, jnp.result_type(x)),
            (params, mutable_state or None),
        )
        return SVIState(self.optim.init(params), mutable, jnp.asarray(rng_key))

    def _multi_sample_model_trace(
        self,
        model_init: Callable[..., Any],
        guide_trace: Trace,
        guide_params: Mapping[str, Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> Trace:
        latents = {
            name: site.value[0]
            for name, site in guide_trace.items()
            if site.type == "sample" and jnp.size(site.value) > 0
        }
        latents.update(guide_params)
        model_trace = trace(substitute(model_init, data=latents)).get_trace(*args, **kwargs)
        if any(site.type == "mutable" for site in model_trace.values()):
            raise ValueError("mutable state in model is not supported for multi-sample guide.")
        return model_trace

    def get_params(self, svi_state: SVIState) -> dict[str, Any]:
        """The constrained values of the ``param`` sites at ``svi_state``."""
        return self._get_params(svi_state.optim_state)  # type: ignore[no-any-return]

    def _params_of(self, optim_state: Any) -> dict[str, Any]:
        return self._constrained(self.optim.get_params(optim_state))

    def _constrained(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {
            k: jax.tree.map(self._transforms[k], v) if k in self._transforms else v
            for k, v in params.items()
        }

    # -- steps -------------------------------------------------------------------------
    def _step(
        self,
        state: SVIState,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        stable: bool,
        forward: bool,
    ) -> tuple[SVIState, Array]:
        rng_key, rng_key_step = random.split(state.rng_key)
        mutable_state = state.mutable_state
        loss = self.loss
        call_kwargs = {**kwargs, **self.static_kwargs}

        def loss_fn(params: Any) -> tuple[Any, Any]:
            constrained = self._constrained(params)
            if mutable_state is not None and jax.tree.leaves(mutable_state):
                constrained.update(lax.stop_gradient(mutable_state))
                result = loss.loss_with_mutable_state(
                    rng_key_step, constrained, self.model, self.guide, *args, **call_kwargs
                )
                return result["loss"], result["mutable_state"]
            value = loss.loss(
                rng_key_step, constrained, self.model, self.guide, *args, **call_kwargs
            )
            return value, None

        step = self.optim.eval_and_stable_update if stable else self.optim.eval_and_update
        (value, mutable), optim_state = step(
            loss_fn, state.optim_state, forward_mode_differentiation=forward
        )
        return SVIState(optim_state, mutable, rng_key), value

    def _step_split(
        self,
        state: SVIState,
        dynamic: tuple[Any, ...],
        static: StaticArgs,
        stable: bool,
        forward: bool,
    ) -> tuple[SVIState, Array]:
        args, kwargs = merge_args(dynamic, static)
        return self._step(state, args, kwargs, stable, forward)

    def _call(
        self,
        compiled: Callable[[SVIState, tuple[Any, ...], StaticArgs], Any],
        eager: Callable[[SVIState, tuple[Any, ...], Mapping[str, Any]], Any],
        state: SVIState,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> Any:
        """``compiled(state, arrays, static)``, or ``eager(state, args, kwargs)`` for a
        model that needs the concrete values of its array arguments (remembered)."""
        if not self._concrete_args:
            dynamic, static = split_args(args, kwargs)
            try:
                return compiled(state, dynamic, static)
            except TRACER_ERRORS:
                self._concrete_args = True
        return eager(state, args, kwargs)

    def update(
        self,
        svi_state: SVIState,
        *args: Any,
        forward_mode_differentiation: bool = False,
        **kwargs: Any,
    ) -> tuple[SVIState, Array]:
        """One optimisation step: the new state and the loss before it.

        Args:
            svi_state: the current state.
            *args: the model's and guide's positional arguments (they may change from
                step to step, a minibatch say).
            forward_mode_differentiation: differentiate in forward mode (``jacfwd``),
                for models with ``lax.while_loop``.
            **kwargs: their keyword arguments.
        """
        forward = forward_mode_differentiation
        return self._call(  # type: ignore[no-any-return]
            lambda s, d, st: self._update(s, d, static=st, stable=False, forward=forward),
            lambda s, a, k: self._step(s, a, k, False, forward),
            svi_state,
            args,
            kwargs,
        )

    def stable_update(
        self,
        svi_state: SVIState,
        *args: Any,
        forward_mode_differentiation: bool = False,
        **kwargs: Any,
    ) -> tuple[SVIState, Array]:
        """Like :meth:`update`, but a step whose loss or gradient is not finite leaves
        the state as it is (and its loss is ``nan``)."""
        forward = forward_mode_differentiation
        return self._call(  # type: ignore[no-any-return]
            lambda s, d, st: self._update(s, d, static=st, stable=True, forward=forward),
            lambda s, a, k: self._step(s, a, k, True, forward),
            svi_state,
            args,
            kwargs,
        )

    def _evaluate_eager(
        self, state: SVIState, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Array:
        # The same key as update's step at this state.
        _, rng_key = random.split(state.rng_key)
        params = self._params_of(state.optim_state)
        return self.loss.loss(  # type: ignore[return-value]
            rng_key, params, self.model, self.guide, *args, **kwargs, **self.static_kwargs
        )

    def _evaluate_split(
        self, state: SVIState, dynamic: tuple[Any, ...], static: StaticArgs
    ) -> Array:
        args, kwargs = merge_args(dynamic, static)
        return self._evaluate_eager(state, args, kwargs)

    def evaluate(self, svi_state: SVIState, *args: Any, **kwargs: Any) -> Array:
        """The loss at ``svi_state`` (with the key :meth:`update` would use)."""
        return self._call(  # type: ignore[no-any-return]
            lambda s, d, st: self._evaluate(s, d, static=st),
            self._evaluate_eager,
            svi_state,
            args,
            kwargs,
        )

    # -- the loop ----------------------------------------------------------------------
    def _chunk_runner(
        self,
        state: SVIState,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        length: int,
        num_steps: int | None,
        stable: bool,
        forward: bool,
    ) -> Callable[[SVIState, Array], tuple[SVIState, Array]]:
        """The compiled loop of ``length`` steps, ``(state, start) -> (state, losses)``."""

        def chunk(
            s0: SVIState, start: Array, a: tuple[Any, ...], k: Mapping[str, Any]
        ) -> tuple[SVIState, Array]:
            def body(s: SVIState, i: Array) -> tuple[SVIState, Array]:
                if num_steps is None:
                    return self._step(s, a, k, stable, forward)
                return lax.cond(  # type: ignore[no-any-return]
                    start + i < num_steps,
                    lambda s: self._step(s, a, k, stable, forward),
                    lambda s: (s, jnp.zeros((), _loss_dtype(s, self.optim))),
                    s,
                )

            return lax.scan(body, s0, jnp.arange(length))  # type: ignore[no-any-return,unused-ignore]

        start = jnp.asarray(0)
        if not self._concrete_args:
            dynamic, static = split_args(args, kwargs)

            def split_chunk(s0: SVIState, i: Array, d: tuple[Any, ...]) -> tuple[SVIState, Array]:
                a, k = merge_args(d, static)
                return chunk(s0, i, a, k)

            try:
                lowered = jax.jit(split_chunk).lower(state, start, dynamic)
            except TRACER_ERRORS:
                self._concrete_args = True
            else:
                compiled = compile_lowered(lowered)
                return lambda s, i: compiled(s, i, dynamic)  # type: ignore[no-any-return]

        def closed_chunk(s0: SVIState, i: Array) -> tuple[SVIState, Array]:
            return chunk(s0, i, args, kwargs)

        compiled_closed = compile_lowered(jax.jit(closed_chunk).lower(state, start))
        return compiled_closed

    def run(
        self,
        rng_key: Array | int,
        num_steps: int,
        *args: Any,
        progress_bar: bool = True,
        stable_update: bool = False,
        forward_mode_differentiation: bool = False,
        init_state: SVIState | None = None,
        init_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> SVIRunResult:
        """Run ``num_steps`` optimisation steps from a fresh :meth:`init` (or
        ``init_state``) and return the constrained params, the last state and the losses.

        Args:
            rng_key: the key.
            num_steps: the number of steps (at least 1).
            *args: the model's and guide's positional arguments.
            progress_bar: show a tqdm bar with the running loss.
            stable_update: take :meth:`stable_update` steps.
            forward_mode_differentiation: differentiate in forward mode.
            init_state: continue from this state (e.g. a previous run's ``state``).
            init_params: constrained initial values of some ``param`` sites.
            **kwargs: their keyword arguments.

        Raises:
            ValueError: ``num_steps`` is not positive.
        """
        if num_steps < 1:
            raise ValueError("num_steps must be a positive integer.")
        if init_state is None or not self._transforms:
            # Resuming on a fresh SVI still needs the params' transforms from one trace.
            fresh = self.init(rng_key, *args, init_params=init_params, **kwargs)
        state = fresh if init_state is None else init_state
        plan = chunk_plan(num_steps, progress_bar)
        runner = self._chunk_runner(
            state,
            args,
            kwargs,
            plan.length,
            num_steps if plan.padded else None,
            stable_update,
            forward_mode_differentiation,
        )
        losses: list[np.ndarray] = []
        with progress(num_steps, "svi", progress_bar) as bar:
            for c in range(plan.num_chunks):
                start = c * plan.length
                state, chunk_losses = runner(state, jnp.asarray(start))
                done = min(plan.length, num_steps - start)
                values = np.asarray(chunk_losses)[:done]
                losses.append(values)
                bar.update(done)
                valid = values[np.isfinite(values)] if stable_update else values
                average = float(np.mean(valid)) if valid.size else float("nan")
                bar.set_postfix_str(f"loss {average:.4g}")
        return SVIRunResult(self.get_params(state), state, jnp.asarray(np.concatenate(losses)))


def _loss_dtype(state: SVIState, optim: Optimizer) -> Any:
    leaves = jax.tree_util.tree_leaves(optim.get_params(state.optim_state))
    floating = [leaf.dtype for leaf in leaves if jnp.issubdtype(leaf.dtype, jnp.floating)]
    return floating[0] if floating else jnp.float32
