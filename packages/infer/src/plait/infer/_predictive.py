"""``Predictive``: draws from the prior, the posterior predictive, or a guide."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array, random

from plait import Trace, hooks
from plait.errors import PlaitError
from plait.handlers import mask, seed, substitute, trace

__all__ = ["Predictive"]

NO_DISCRETE_PLUGIN = (
    "Predictive(..., infer_discrete=True) draws enumerated discrete sites from their "
    "posterior through the plait_infer_discrete hook, and no installed plugin answers it. "
    "Install plait-enum: pip install plait-enum."
)


class Predictive:
    """Draw the sites of ``model`` for each posterior sample (or from the prior, or a guide).

    For each batch element, the model runs with ``substitute(model, sample)`` under its
    own key (``seed``), vectorised with ``jax.vmap``. Deterministic sites are recomputed,
    not substituted.

    Args:
        model: the model.
        posterior_samples: values by site name with ``batch_ndims`` leading batch dims
            (e.g. ``mcmc.get_samples()``); ``None`` draws from the prior.
        guide: draw the latents from this guide (with ``params``) first.
        params: constrained ``param`` values (e.g. ``svi.get_params(state)``).
        num_samples: the number of draws when there are no posterior samples.
        return_sites: the sites to return; default: sample sites not in
            ``posterior_samples`` and deterministic sites. ``""`` returns every site.
        infer_discrete: draw enumerated discrete sites from their posterior
            (``plait.enum.infer_discrete``, needs plait-enum).
        batch_ndims: leading batch dims of ``posterior_samples`` (default 1 without a
            guide, 0 with one).
        exclude_deterministic: recompute deterministic sites instead of substituting
            their values from ``posterior_samples``.

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
        batch_ndims: int | None = None,
        exclude_deterministic: bool = True,
    ) -> None:
        if posterior_samples is not None and guide is not None:
            raise PlaitError("Predictive takes posterior_samples or a guide, not both.")
        if batch_ndims is None:
            batch_ndims = 0 if posterior_samples is None and guide is not None else 1
        self.model = model
        self.posterior_samples = dict(posterior_samples or {})
        self.guide = guide
        self.params = dict(params or {})
        self.return_sites = return_sites
        self.infer_discrete = infer_discrete
        self.batch_ndims = batch_ndims
        self.exclude_deterministic = exclude_deterministic
        self._batch_shape = self._find_batch_shape(num_samples)

    def _find_batch_shape(self, num_samples: int | None) -> tuple[int, ...]:
        if not self.posterior_samples:
            if num_samples is None:
                raise PlaitError(
                    "Predictive needs num_samples when it has no posterior_samples, e.g. "
                    "Predictive(model, num_samples=100) or Predictive(model, guide=guide, "
                    "params=params, num_samples=100)."
                )
            return (num_samples,)
        shapes = {
            name: tuple(jnp.shape(v))[: self.batch_ndims]
            for name, v in self.posterior_samples.items()
        }
        batch_shape = next(iter(shapes.values()))
        if len(batch_shape) < self.batch_ndims or any(s != batch_shape for s in shapes.values()):
            raise PlaitError(
                f"Predictive: the posterior samples must share their {self.batch_ndims} "
                f"leading batch dims (batch_ndims={self.batch_ndims}), got {shapes}."
            )
        if num_samples is not None and num_samples != math.prod(batch_shape):
            raise PlaitError(
                f"Predictive got num_samples={num_samples} but the posterior samples hold "
                f"{math.prod(batch_shape)} draws (batch shape {batch_shape}); leave "
                "num_samples out."
            )
        return batch_shape

    def __call__(self, rng_key: Array, *args: Any, **kwargs: Any) -> dict[str, Array]:
        """Draw; ``args``/``kwargs`` go to the model (and guide)."""
        samples = self.posterior_samples
        if self.guide is not None:
            rng_key, guide_key = random.split(rng_key)
            guide = substitute(self.guide, data=self.params) if self.params else self.guide
            samples = _draw(guide_key, guide, {}, self._batch_shape, "", False, True, args, kwargs)
        model = substitute(self.model, data=self.params) if self.params else self.model
        return _draw(
            rng_key,
            model,
            samples,
            self._batch_shape,
            self.return_sites,
            self.infer_discrete,
            self.exclude_deterministic,
            args,
            kwargs,
        )


def _draw(
    rng_key: Array,
    model: Callable[..., Any],
    samples: Mapping[str, Any],
    batch_shape: tuple[int, ...],
    return_sites: Sequence[str] | str | None,
    infer_discrete: bool,
    exclude_deterministic: bool,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> dict[str, Array]:
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

    def single(key: Array, sample: Mapping[str, Any]) -> dict[str, Array]:
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
    keys = random.split(rng_key, n) if n > 0 else random.split(rng_key, 0)
    flat = {k: jnp.reshape(v, (n, *jnp.shape(v)[len(batch_shape) :])) for k, v in samples.items()}
    if not batch_shape:
        out = single(rng_key, samples)
        return out
    drawn = jax.vmap(single)(keys, flat)
    return {k: jnp.reshape(v, batch_shape + jnp.shape(v)[1:]) for k, v in drawn.items()}


def _sites(
    tr: Trace, sample: Mapping[str, Any], return_sites: Sequence[str] | str | None
) -> list[str]:
    if return_sites == "":
        return [name for name, site in tr.items() if site.type != "plate"]
    if return_sites is not None:
        missing = [name for name in return_sites if name not in tr]
        if missing:
            raise PlaitError(
                f"Predictive: return_sites names {missing}, which the model does not have; "
                f"its sites are {[n for n, s in tr.items() if s.type != 'plate']}."
            )
        return list(return_sites)
    return [
        name
        for name, site in tr.items()
        if (site.type == "sample" and name not in sample) or site.type == "deterministic"
    ]
