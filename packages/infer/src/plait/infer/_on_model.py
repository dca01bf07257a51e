"""What the gradient-free and Barker kernels share: a model or a potential function.

NumPyro's ``BarkerMH``, ``SA``, ``AIES`` and ``ESS`` each take ``model=None,
potential_fn=None`` (exactly one), read the model with ``initialize_model`` and
post-process draws with its ``postprocess_fn``. :class:`ModelKernel` does that once for
them on :func:`plait.infer._model.prepare_model` (traced once per run in ``prepare``,
never inside the compiled code).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, random

from plait.infer._init import InitStrategy
from plait.infer._kernel import MCMCKernel
from plait.infer._model import PreparedModel, prepare_model
from plait.infer._util import ParamInfo, find_valid_initial_params, raise_invalid_init

__all__ = ["ModelKernel"]

StateT = TypeVar("StateT")


def _identity(x: Any) -> Any:
    return x


class ModelKernel(MCMCKernel[StateT]):
    """A kernel on ``model`` (unconstrained latents, post-processed draws) or on
    ``potential_fn`` (then ``MCMC.run`` needs ``init_params``)."""

    def __init__(
        self,
        model: Callable[..., Any] | None,
        potential_fn: Callable[[Any], Array] | None,
        init_strategy: InitStrategy,
    ) -> None:
        if (model is None) == (potential_fn is None):
            raise ValueError("Only one of `model` or `potential_fn` must be specified.")
        self._model = model
        self._potential_fn = potential_fn
        self._init_strategy = init_strategy
        self._prepared: PreparedModel | None = None
        self._num_warmup = 0

    @property
    def model(self) -> Callable[..., Any] | None:
        return self._model

    @property
    def sample_field(self) -> str:
        return "z"

    def __repr__(self) -> str:
        target = self._model if self._model is not None else self._potential_fn
        return f"{type(self).__name__}({getattr(target, '__name__', type(target).__name__)})"

    def prepare(
        self, rng_key: Any, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> Hashable:
        if self._model is None:
            return ()
        self._prepared = prepare_model(
            rng_key,
            self._model,
            self._init_strategy,
            model_args,
            model_kwargs,
            algorithm=type(self).__name__,
        )
        return self._prepared.cache_key

    def _require_prepared(self) -> PreparedModel:
        if self._prepared is None:
            raise RuntimeError(
                f"{type(self).__name__} has not read its model yet: call prepare(rng_key, "
                "model_args, model_kwargs) first (MCMC.run does)."
            )
        return self._prepared

    def get_potential_fn(
        self, model_args: tuple[Any, ...] = (), model_kwargs: Mapping[str, Any] | None = None
    ) -> Callable[[Any], Array]:
        """Minus the log density of unconstrained latents, for these arguments."""
        if self._model is None:
            assert self._potential_fn is not None
            return self._potential_fn
        prepared = self._require_prepared()
        kwargs = dict(model_kwargs or {})
        return lambda z: prepared.potential(z, model_args, kwargs)

    def initial_params(
        self,
        rng_key: Array,
        init_params: Any,
        model_args: tuple[Any, ...],
        model_kwargs: dict[str, Any],
        *,
        validate_grad: bool,
        max_tries: int = 1,
    ) -> ParamInfo:
        """A starting point: ``init_params`` (unconstrained), or one drawn with the init
        strategy (a finite potential, and gradient if ``validate_grad``, in up to
        ``max_tries`` tries). ``init`` makes one try and :meth:`restart_invalid` searches
        again for the chains whose start is not finite (a ``while_loop`` in the compiled
        ``init`` would double its compile time)."""
        potential = self.get_potential_fn(model_args, model_kwargs)
        if init_params is None:
            if self._model is None:
                raise ValueError(
                    "Valid value of `init_params` must be provided with `potential_fn`."
                )
            prepared = self._require_prepared()
            info, _ = find_valid_initial_params(
                rng_key,
                prepared.model,
                prepared.spec,
                init_strategy=self._init_strategy,
                model_args=model_args,
                model_kwargs=model_kwargs,
                validate_grad=validate_grad,
                max_tries=max_tries,
            )
            return info
        if isinstance(init_params, ParamInfo):
            return init_params
        z = dict(init_params) if isinstance(init_params, Mapping) else init_params
        if validate_grad:
            pe, grad = jax.value_and_grad(potential)(z)
        else:
            pe, grad = potential(z), jax.tree_util.tree_map(jnp.zeros_like, z)
        return ParamInfo(z, pe, grad)

    def search_starts(
        self,
        keys: Array,
        model_args: tuple[Any, ...],
        model_kwargs: dict[str, Any],
        *,
        validate_grad: bool,
    ) -> ParamInfo:
        """One valid start per key (up to 100 tries each), or NumPyro's error naming the
        site whose log density is not finite."""
        if self._model is None:
            raise ValueError(
                "the potential energy is not finite at init_params; start where potential_fn "
                "is finite."
            )
        prepared = self._require_prepared()

        def search(key: Array) -> tuple[ParamInfo, Array]:
            return find_valid_initial_params(
                key,
                prepared.model,
                prepared.spec,
                init_strategy=self._init_strategy,
                model_args=model_args,
                model_kwargs=model_kwargs,
                validate_grad=validate_grad,
            )

        infos, found = jax.jit(jax.vmap(search))(keys)
        if not np.asarray(found).all():
            raise_invalid_init(
                prepared.model, prepared.spec, infos, found, model_args, model_kwargs
            )
        return infos  # type: ignore[no-any-return]

    def restart_invalid(
        self,
        state: StateT,
        valid: np.ndarray,
        model_args: tuple[Any, ...],
        model_kwargs: dict[str, Any],
        *,
        validate_grad: bool,
    ) -> StateT:
        """``state`` (one row per chain) with the chains that are not ``valid`` started
        afresh from a searched start (compiled only then)."""
        if valid.all():
            return state
        bad = np.flatnonzero(~valid)
        rng_key = jnp.asarray(state.rng_key)  # type: ignore[attr-defined]
        keys = jax.vmap(lambda k: random.fold_in(k, 1))(rng_key[bad])
        infos = self.search_starts(keys, model_args, model_kwargs, validate_grad=validate_grad)

        def restart(key: Array, info: ParamInfo) -> Any:
            return self.init(key, self._num_warmup, info, model_args, model_kwargs)

        fresh = jax.jit(jax.vmap(restart))(keys, infos)
        return jax.tree_util.tree_map(  # type: ignore[no-any-return]
            lambda old, new: jnp.asarray(old).at[bad].set(new), state, fresh
        )

    def postprocess_fn(
        self, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> Callable[[Any], Any]:
        if self._model is None:
            return _identity
        prepared = self._require_prepared()
        return lambda z: prepared.postprocess(z, model_args, model_kwargs)
