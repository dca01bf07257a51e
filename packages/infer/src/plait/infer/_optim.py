"""The optimisers SVI accepts, behind NumPyro's optimiser interface.

NumPyro's ``SVI`` drives every optimiser through ``numpyro.optim._NumPyroOptim``'s four
methods: ``init(params) -> (step, state)``, ``eval_and_update(fn, state)``,
``eval_and_stable_update(fn, state)`` and ``get_params(state)``. An optax
``GradientTransformation`` is wrapped as ``numpyro.optim.optax_to_numpyro`` wraps it
(state ``(step, (params, optax_state))``, updates with ``value=loss`` for optax's
extra-args transformations), and so is a ``jax.example_libraries.optimizers.Optimizer``
triple. A ``numpyro.optim`` object (``numpyro.optim.Adam(1e-3)``) already has the
interface and is used as it is, so the same steps give the same numbers as NumPyro.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.flatten_util import ravel_pytree

__all__ = ["Optimizer", "as_optimizer", "value_and_grad_aux"]

OPTIMIZER_HINT: Final = (
    "Pass an optax optimiser (optax.adam(1e-3)), a numpyro.optim optimiser "
    "(numpyro.optim.Adam(1e-3)) or a jax.example_libraries.optimizers triple."
)


class Optimizer(Protocol):
    """NumPyro's optimiser interface (``numpyro.optim._NumPyroOptim``)."""

    def init(self, params: Any) -> Any: ...

    def eval_and_update(
        self, fn: Callable[[Any], tuple[Any, Any]], state: Any, forward_mode_differentiation: bool
    ) -> tuple[tuple[Any, Any], Any]: ...

    def eval_and_stable_update(
        self, fn: Callable[[Any], tuple[Any, Any]], state: Any, forward_mode_differentiation: bool
    ) -> tuple[tuple[Any, Any], Any]: ...

    def get_params(self, state: Any) -> Any: ...


def value_and_grad_aux(
    fn: Callable[[Any], tuple[Any, Any]], x: Any, forward_mode_differentiation: bool = False
) -> tuple[tuple[Any, Any], Any]:
    """``((value, aux), grad)`` of ``fn(x) -> (value, aux)``, reverse or forward mode.

    Example:
        >>> import jax.numpy as jnp
        >>> (value, aux), grad = value_and_grad_aux(lambda x: (x**2, None), jnp.asarray(3.0))
        >>> float(value), float(grad)
        (9.0, 6.0)
    """
    if forward_mode_differentiation:

        def wrapper(x: Any) -> tuple[Any, tuple[Any, Any]]:
            out, aux = fn(x)
            return out, (out, aux)

        grads, (out, aux) = jax.jacfwd(wrapper, has_aux=True)(x)
        return (out, aux), grads
    return jax.value_and_grad(fn, has_aux=True)(x)  # type: ignore[no-any-return]


class _StepOptimizer:
    """An ``(init_fn, update_fn, get_params_fn)`` optimiser with a step counter."""

    def __init__(
        self,
        init_fn: Callable[[Any], Any],
        update_fn: Callable[..., Any],
        get_params_fn: Callable[[Any], Any],
        *,
        update_with_value: bool,
    ) -> None:
        self.init_fn = init_fn
        self.update_fn = update_fn
        self.get_params_fn = get_params_fn
        self.update_with_value = update_with_value

    def init(self, params: Any) -> tuple[Any, Any]:
        return jnp.array(0), self.init_fn(params)

    def update(self, grads: Any, state: tuple[Any, Any], value: Any = None) -> tuple[Any, Any]:
        i, inner = state
        if self.update_with_value:
            inner = self.update_fn(i, grads, inner, value=value)
        else:
            inner = self.update_fn(i, grads, inner)
        return i + 1, inner

    def get_params(self, state: tuple[Any, Any]) -> Any:
        return self.get_params_fn(state[1])

    def eval_and_update(
        self,
        fn: Callable[[Any], tuple[Any, Any]],
        state: tuple[Any, Any],
        forward_mode_differentiation: bool = False,
    ) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
        (out, aux), grads = value_and_grad_aux(
            fn, self.get_params(state), forward_mode_differentiation
        )
        return (out, aux), self.update(grads, state, value=out)

    def eval_and_stable_update(
        self,
        fn: Callable[[Any], tuple[Any, Any]],
        state: tuple[Any, Any],
        forward_mode_differentiation: bool = False,
    ) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
        (out, aux), grads = value_and_grad_aux(
            fn, self.get_params(state), forward_mode_differentiation
        )
        # As NumPyro: a non-finite loss or gradient leaves the state and gives a nan loss.
        finite = jnp.isfinite(out) & jnp.isfinite(ravel_pytree(grads)[0]).all()
        out, state = lax.cond(
            finite,
            lambda _: (out, self.update(grads, state, value=out)),
            lambda _: (jnp.asarray(jnp.nan, jnp.result_type(out)), state),
            None,
        )
        return (out, aux), state


def _from_optax(transformation: optax.GradientTransformation) -> _StepOptimizer:
    extra = optax.with_extra_args_support(transformation)

    def init_fn(params: Any) -> tuple[Any, Any]:
        return params, transformation.init(params)

    def update_fn(step: Any, grads: Any, state: tuple[Any, Any], value: Any) -> tuple[Any, Any]:
        params, opt_state = state
        updates, opt_state = extra.update(grads, opt_state, params, value=value)
        return optax.apply_updates(params, updates), opt_state

    return _StepOptimizer(init_fn, update_fn, lambda state: state[0], update_with_value=True)


def _is_numpyro_optimizer(optim: Any) -> bool:
    return all(
        callable(getattr(optim, name, None))
        for name in ("init", "eval_and_update", "eval_and_stable_update", "get_params")
    )


def as_optimizer(optim: Any) -> Optimizer:
    """NumPyro's optimiser interface for an optax, ``numpyro.optim`` or
    ``jax.example_libraries`` optimiser.

    Raises:
        TypeError: ``optim`` is none of these.

    Example:
        >>> import optax
        >>> opt = as_optimizer(optax.sgd(0.5))
        >>> state = opt.init({"x": 1.0})
        >>> _, state = opt.eval_and_update(lambda p: (p["x"] ** 2, None), state)
        >>> float(opt.get_params(state)["x"])  # 1 - 0.5 * 2
        0.0
    """
    if _is_numpyro_optimizer(optim):
        return optim  # type: ignore[no-any-return]
    if isinstance(optim, optax.GradientTransformation):
        return _from_optax(optim)
    triple = getattr(optim, "_fields", None)
    if triple == ("init_fn", "update_fn", "params_fn"):
        return _StepOptimizer(*optim, update_with_value=False)
    raise TypeError(
        f"SVI got the optimiser {optim!r} ({type(optim).__name__}), which is not an optax "
        f"GradientTransformation, a numpyro.optim optimiser or a "
        f"jax.example_libraries.optimizers.Optimizer. {OPTIMIZER_HINT}"
    )
