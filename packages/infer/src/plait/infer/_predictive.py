"""``Predictive``: draws from the prior, the posterior predictive, or a guide."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array, random

from plait import Trace, hooks
from plait.errors import PlaitError
from plait.handlers import mask, seed, substitute, trace
from plait.infer._args import merge_args, split_args
from plait.infer._compiled import TRACER_ERRORS, compile_lowered
from plait.infer._log_probs import batch_map

__all__ = ["Predictive"]

_GUIDE_SITES = "<guide>"
"""``return_sites`` of a guide's draws: every site, and the indices of subsampled plates
(so the model keeps the guide's subsample)."""


class PredictiveError(PlaitError, ValueError):
    """Invalid arguments to :class:`Predictive` (a ``ValueError``, as in NumPyro)."""


NO_DISCRETE_PLUGIN = (
    "Predictive(..., infer_discrete=True) draws enumerated discrete sites from their "
    "posterior through the plait_infer_discrete hook, and no installed plugin answers it. "
    "Install plait-enum: pip install plait-enum."
)


def _condition_deterministic(
    condition_deterministic: bool | None, exclude_deterministic: bool | None
) -> bool:
    """NumPyro's ``condition_deterministic``, with ``exclude_deterministic`` its
    deprecated opposite (warned about, as NumPyro does)."""
    if exclude_deterministic is None:
        return bool(condition_deterministic)
    if condition_deterministic is not None:
        raise PredictiveError(
            "Only one of `condition_deterministic` or the deprecated `exclude_deterministic` "
            "can be provided, not both."
        )
    warnings.warn(
        "`exclude_deterministic` is deprecated, use `condition_deterministic` instead "
        "(`exclude_deterministic=True` corresponds to `condition_deterministic=False`).",
        FutureWarning,
        stacklevel=3,
    )
    return not exclude_deterministic


def _batch_shape(
    samples: Mapping[str, Any], batch_ndims: int, num_samples: int | None
) -> tuple[tuple[int, ...], int]:
    """The batch shape of the posterior samples (or of ``num_samples`` prior draws) and
    the number of draws."""
    batch_shape: tuple[int, ...] | None = None
    first = None
    for name, value in samples.items():
        shape = tuple(jnp.shape(value))[:batch_ndims]
        if batch_shape is not None and shape != batch_shape:
            raise PredictiveError(
                f"Batch shapes at site {name} and {first} should be the same, but got "
                f"{shape} and {batch_shape} (batch_ndims={batch_ndims})."
            )
        if batch_shape is None:
            batch_shape, first = shape, name
            size = math.prod(shape)
            if num_samples is not None and num_samples != size:
                warnings.warn(
                    f"Sample's batch dimension size {size} is different from the provided "
                    f"{num_samples} num_samples argument. Defaulting to {size}.",
                    UserWarning,
                    stacklevel=4,
                )
            num_samples = size
    if num_samples is None:
        raise PredictiveError(
            "Predictive needs num_samples when it has no posterior_samples, e.g. "
            "Predictive(model, num_samples=100) or Predictive(model, guide=guide, "
            "params=params, num_samples=100)."
        )
    if batch_shape is None:
        batch_shape = (1,) * (batch_ndims - 1) + (num_samples,)
    return batch_shape, num_samples


class Predictive:
    """Draw the sites of ``model`` for each posterior sample (or from the prior, or a guide).

    For each batch element the model runs with ``substitute(model, sample)`` under its
    own key (``seed``), the draws mapped with ``jax.lax.map`` (``parallel=False``, NumPyro's
    default) or ``jax.vmap`` (``parallel=True``); both give the same numbers. Deterministic
    sites are recomputed from their parents unless ``condition_deterministic``. With a
    guide, its draws (latents, deterministic sites and subsample indices) are substituted
    into the model, so the model's deterministic sites are returned too and a subsampled
    plate keeps the guide's indices.

    With ``parallel=False`` the computation is traced on every call and compiled once per
    distinct traced computation (a second call with new draws of the same shapes compiles
    nothing); with ``parallel=True`` it runs uncompiled, as NumPyro's does.

    Args:
        model: the model.
        posterior_samples: values by site name with ``batch_ndims`` leading batch dims
            (e.g. ``mcmc.get_samples()``); ``None`` draws from the prior.
        guide: draw the latents from this guide (with ``params``) first.
        params: constrained ``param`` values (e.g. ``svi.get_params(state)``); with a guide
            and ``batch_ndims=1``, a batch of params (one guide per leading index).
        num_samples: the number of draws when there are no posterior samples.
        return_sites: the sites to return; default: sample sites not in
            ``posterior_samples`` and deterministic sites. ``""`` returns every site.
        infer_discrete: draw enumerated discrete sites from their posterior
            (through the ``plait_infer_discrete`` hook: needs plait-enum).
        parallel: ``jax.vmap`` over the draws instead of ``jax.lax.map``.
        batch_ndims: leading batch dims of ``posterior_samples`` or of batched ``params``
            (default 1 without a guide, 0 with one).
        condition_deterministic: substitute the deterministic sites of
            ``posterior_samples`` instead of recomputing them.
        exclude_deterministic: deprecated opposite of ``condition_deterministic``.

    Raises:
        ValueError: neither ``posterior_samples`` nor ``num_samples``, or both
            ``posterior_samples`` and ``guide``, or samples with different batch shapes.

    Example:
        >>> import jax
        >>> import numpyro.distributions as dist
        >>> from plait import plate, sample
        >>> from plait.infer import Predictive
        >>> def model(n):
        ...     mu = sample("mu", dist.Normal(0.0, 1.0))
        ...     with plate("data", n):
        ...         sample("y", dist.Normal(mu, 1.0))
        >>> prior = Predictive(model, num_samples=4)(jax.random.key(0), 3)
        >>> prior["mu"].shape, prior["y"].shape
        ((4,), (4, 3))
        >>> post = Predictive(model, {"mu": jax.numpy.zeros(5)})(jax.random.key(1), 3)
        >>> sorted(post), post["y"].shape
        (['y'], (5, 3))
    """

    def __init__(
        self,
        model: Callable[..., Any],
        posterior_samples: Mapping[str, Any] | None = None,
        *,
        guide: Callable[..., Any] | None = None,
        params: Mapping[str, Any] | None = None,
        num_samples: int | None = None,
        return_sites: Sequence[str] | str | None = None,
        infer_discrete: bool = False,
        parallel: bool = False,
        batch_ndims: int | None = None,
        condition_deterministic: bool | None = None,
        exclude_deterministic: bool | None = None,
    ) -> None:
        self.condition_deterministic = _condition_deterministic(
            condition_deterministic, exclude_deterministic
        )
        if posterior_samples is None and num_samples is None:
            raise PredictiveError(
                "Predictive needs num_samples when it has no posterior_samples: either "
                "posterior_samples or num_samples must be specified, e.g. "
                "Predictive(model, num_samples=100)."
            )
        if posterior_samples is not None and guide is not None:
            raise PredictiveError(
                "Only one of guide or posterior_samples can be provided, not both."
            )
        if batch_ndims is None:
            batch_ndims = 1 if guide is None else 0
        self.model = model
        self.posterior_samples = dict(posterior_samples or {})
        self.guide = guide
        self.params = dict(params or {})
        self.return_sites = return_sites
        self.infer_discrete = infer_discrete
        self.parallel = parallel
        self.batch_ndims = batch_ndims
        self._batch_shape, self.num_samples = _batch_shape(
            self.posterior_samples, batch_ndims, num_samples
        )

    @property
    def exclude_deterministic(self) -> bool:
        """Deprecated opposite of ``condition_deterministic``."""
        return not self.condition_deterministic

    def __call__(self, rng_key: Array, *args: Any, **kwargs: Any) -> dict[str, Array]:
        """Draw; ``args``/``kwargs`` go to the model (and guide)."""
        batched_params = self.guide is not None and self.params and self.batch_ndims == 1
        if self.batch_ndims >= 2 and self.guide is not None and self.params:
            raise NotImplementedError(
                "Predictive with a guide takes params with at most one batch dim "
                f"(batch_ndims={self.batch_ndims})."
            )
        return _compiled_call(self, rng_key, bool(batched_params), args, kwargs)

    def _call_with_params(
        self,
        rng_key: Array,
        params: Mapping[str, Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> dict[str, Array]:
        samples: Mapping[str, Any] = self.posterior_samples
        if self.guide is not None:
            rng_key, guide_key = random.split(rng_key)
            guide = substitute(self.guide, data=params) if params else self.guide
            samples = _draw(
                guide_key,
                guide,
                {},
                self._batch_shape,
                _GUIDE_SITES,
                False,
                self.parallel,
                True,
                args,
                kwargs,
            )
        model = substitute(self.model, data=params) if params else self.model
        return _draw(
            rng_key,
            model,
            samples,
            self._batch_shape,
            self.return_sites,
            self.infer_discrete,
            self.parallel,
            not self.condition_deterministic,
            args,
            kwargs,
        )

    def _call(
        self,
        rng_key: Array,
        params: Mapping[str, Any],
        batched_params: bool,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> dict[str, Array]:
        if not batched_params:
            return self._call_with_params(rng_key, params, args, kwargs)
        size = jnp.shape(jax.tree.leaves(params)[0])[0]
        keys = random.split(rng_key, size)
        call = partial(self._call_with_params, args=args, kwargs=kwargs)
        return jax.vmap(call, in_axes=0, out_axes=1)(keys, params)  # type: ignore[no-any-return]


def _compiled_call(
    predictive: Predictive,
    rng_key: Array,
    batched_params: bool,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> dict[str, Array]:
    """``predictive._call`` compiled, with the model's arrays as inputs (or, for a model
    that needs their concrete values, closed over), reusing an equal compiled program."""
    params = predictive.params
    if predictive.parallel:
        # NumPyro maps the draws with an uncompiled jax.vmap: each operation runs once
        # for the whole batch, and nothing compiles the whole model.
        return predictive._call(rng_key, params, batched_params, args, kwargs)
    dynamic, static = split_args(args, kwargs)

    def traced(key: Array, p: Mapping[str, Any], d: tuple[Any, ...]) -> dict[str, Array]:
        a, k = merge_args(d, static)
        return predictive._call(key, p, batched_params, a, k)

    try:
        lowered = jax.jit(traced).lower(rng_key, params, dynamic)
    except TRACER_ERRORS:
        pass
    else:
        return compile_lowered(lowered)(rng_key, params, dynamic)  # type: ignore[no-any-return]

    def closed(key: Array, p: Mapping[str, Any]) -> dict[str, Array]:
        return predictive._call(key, p, batched_params, args, kwargs)

    try:
        lowered = jax.jit(closed).lower(rng_key, params)
    except TRACER_ERRORS:
        # The model computes with its arrays' values (jnp on them is traced under jit):
        # run it uncompiled, as NumPyro does.
        return closed(rng_key, params)
    return compile_lowered(lowered)(rng_key, params)  # type: ignore[no-any-return]


def _draw(
    rng_key: Array,
    model: Callable[..., Any],
    samples: Mapping[str, Any],
    batch_shape: tuple[int, ...],
    return_sites: Sequence[str] | str | None,
    infer_discrete: bool,
    parallel: bool,
    exclude_deterministic: bool,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> dict[str, Array]:
    """One draw of ``model`` per batch element (NumPyro's ``_predictive``, key for key)."""
    # Log densities are not needed to draw: mask them out (cheaper, and no NaNs).
    masked = mask(model, mask=False)

    def substituted(fn: Callable[..., Any], sample: Mapping[str, Any]) -> Callable[..., Any]:
        if not sample:
            return fn
        if not exclude_deterministic:
            return substitute(fn, data=sample)
        return substitute(
            fn,
            substitute_fn=lambda msg: None if msg.type == "deterministic" else sample.get(msg.name),  # type: ignore[arg-type]
        )

    def single(key_and_sample: tuple[Array, Mapping[str, Any]]) -> dict[str, Array]:
        key, sample = key_and_sample
        if infer_discrete:
            key, discrete_key = random.split(key)
            # infer_discrete needs the log densities: do not mask.
            with seed(rng_seed=key):
                found = hooks.infer_discrete(
                    substituted(model, sample), args, kwargs, temperature=1, rng_key=discrete_key
                )
            if found is None:
                raise PlaitError(NO_DISCRETE_PLUGIN)
            tr = found
        else:
            tr = trace(seed(substituted(masked, sample), key)).get_trace(*args, **kwargs)
        return {name: tr[name].value for name in _sites(tr, sample, return_sites)}

    n = math.prod(batch_shape)
    keys = random.split(rng_key, n) if n > 1 else rng_key
    keys = jnp.reshape(keys, batch_shape)
    if not batch_shape:
        return single((rng_key, samples))
    return batch_map(single, (keys, dict(samples)), len(batch_shape), parallel)  # type: ignore[no-any-return]


def _sites(
    tr: Trace, sample: Mapping[str, Any], return_sites: Sequence[str] | str | None
) -> list[str]:
    if return_sites == "":
        return [name for name, site in tr.items() if site.type != "plate"]
    if return_sites == _GUIDE_SITES:
        return [
            name
            for name, site in tr.items()
            if site.type != "plate" or site.args[1] not in (None, site.args[0])
        ]
    if return_sites is not None:
        missing = [name for name in return_sites if name not in tr]
        if missing:
            raise PredictiveError(
                f"Predictive: return_sites names {missing}, which the model does not have; "
                f"its sites are {[n for n, s in tr.items() if s.type != 'plate']}."
            )
        return list(return_sites)
    return [
        name
        for name, site in tr.items()
        if (site.type == "sample" and name not in sample) or site.type == "deterministic"
    ]
