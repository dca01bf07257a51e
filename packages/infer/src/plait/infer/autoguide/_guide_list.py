"""``AutoGuideList``: one guide made of autoguides and hand-written guides for parts of
the model."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array, random

from plait.handlers import block, seed, substitute, trace
from plait.infer._init import InitStrategy, init_to_uniform
from plait.infer.autoguide._base import AutoGuide
from plait.infer.autoguide._prototype import Prototype

__all__ = ["AutoGuideList"]

_REFUSED = ("AutoDAIS", "AutoSemiDAIS", "AutoSurrogateLikelihoodDAIS")


class AutoGuideList(AutoGuide):
    """A guide made of parts, each for the sites of a blocked view of the model
    (NumPyro's ``AutoGuideList``); no two parts may draw the same site.

    Args:
        model: the whole model.
        prefix: the param name prefix.
        init_loc_fn: the init strategy of the list's own prototype run.
        create_plates: a function of the model's arguments returning the plates to use.
        forward_mode_differentiation: accepted for NumPyro compatibility.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import block, seed, trace
        >>> from plait.infer.autoguide import AutoDelta, AutoGuideList, AutoNormal
        >>> def model():
        ...     sample("a", dist.Normal(0.0, 1.0))
        ...     sample("b", dist.Normal(0.0, 1.0))
        >>> guide = AutoGuideList(model)
        >>> guide.append(AutoNormal(block(model, hide=["b"])))
        >>> guide.append(AutoDelta(block(model, expose=["b"])))
        >>> sorted(n for n, s in trace(seed(guide, 0)).get_trace().items() if s.type == "param")
        ['a_auto_loc', 'a_auto_scale', 'b_auto_loc']
    """

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        prefix: str = "auto",
        init_loc_fn: InitStrategy = init_to_uniform,
        create_plates: Callable[..., Any] | None = None,
        forward_mode_differentiation: bool = False,
    ) -> None:
        self._guides: list[Callable[..., Any]] = []
        super().__init__(
            model,
            prefix=prefix,
            init_loc_fn=init_loc_fn,
            create_plates=create_plates,
            forward_mode_differentiation=forward_mode_differentiation,
        )

    def _find_prototype(
        self, key: Array, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Prototype:
        # The list reads only the model's plates and sites; its parts find starting
        # points (and may draw discrete sites, hand-written parts say).
        run = substitute(seed(self.model, key), substitute_fn=self.init_loc_fn)
        tr = trace(run).get_trace(*args, **kwargs)
        return Prototype(tr, {}, {}, self.model)

    def append(self, part: Callable[..., Any]) -> None:
        """Add an autoguide or a hand-written guide for part of the model (built on the
        model blocked to its sites).

        Raises:
            ValueError: ``part`` is one of the DAIS guides, which cannot be combined.
        """
        if type(part).__name__ in _REFUSED or any(
            cls.__name__ in _REFUSED for cls in type(part).__mro__
        ):
            raise ValueError(
                "AutoDAIS, AutoSemiDAIS, and AutoSurrogateLikelihoodDAIS are not supported "
                "in an AutoGuideList."
            )
        self._guides.append(part)

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Array]:
        check = self.prototype_trace is None
        if check:
            self._setup_prototype(*args, **kwargs)
        self._create_plates(*args, **kwargs)
        result: dict[str, Array] = {}
        for part in self._guides:
            out = part(*args, **kwargs)
            if isinstance(out, dict):
                result.update(out)
        if check:
            # After the parts' first calls, when their prototypes exist.
            for i, part in enumerate(self._guides):
                prototype = getattr(part, "prototype_trace", None)
                for name, site in (prototype or {}).items():
                    if site.type == "deterministic":
                        raise ValueError(
                            f"deterministic site '{name}' in sub-guide at position {i} should "
                            "not be exposed"
                        )
        return result

    def __getitem__(self, key: int) -> Callable[..., Any]:
        return self._guides[key]

    def __len__(self) -> int:
        return len(self._guides)

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        yield from self._guides

    def sample_posterior(
        self,
        rng_key: Array,
        params: Mapping[str, Any],
        *args: Any,
        sample_shape: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> dict[str, Array]:
        """Every part's draws (each part with ``rng_key``, as NumPyro's), and the whole
        model's deterministic sites at them."""
        latents: dict[str, Array] = {}
        for part in self._guides:
            if isinstance(part, AutoGuide):
                drawn = part.sample_posterior(
                    rng_key, params, *args, sample_shape=sample_shape, **kwargs
                )
            else:
                drawn = _draw_custom(part, rng_key, params, args, kwargs, sample_shape)
            latents.update(drawn)
        assert self.prototype_trace is not None
        names = {
            n for n, s in self.prototype_trace.items() if s.type == "sample" and not s.is_observed
        }
        latent_only = {k: v for k, v in latents.items() if k in names}
        full = self._complete(latent_only, params, len(sample_shape), args, kwargs, constrain=False)
        return {**latents, **full}

    def median(self, params: Mapping[str, Any]) -> dict[str, Array]:
        result: dict[str, Array] = {}
        for part in self._guides:
            result.update(part.median(params))  # type: ignore[attr-defined]
        return result

    def quantiles(self, params: Mapping[str, Any], quantiles: Iterable[float]) -> dict[str, Array]:
        q = list(quantiles)
        result: dict[str, Array] = {}
        for part in self._guides:
            result.update(part.quantiles(params, q))  # type: ignore[attr-defined]
        return result


def _draw_custom(
    part: Callable[..., Any],
    rng_key: Array,
    params: Mapping[str, Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    sample_shape: tuple[int, ...],
) -> dict[str, Array]:
    """The latent sites a hand-written guide draws, ``sample_shape`` times."""
    run = substitute(part, data=params) if params else part

    def one(key: Array) -> dict[str, Array]:
        with block():
            tr = trace(seed(run, key)).get_trace(*args, **kwargs)
        return {
            n: s.value
            for n, s in tr.items()
            if s.type == "sample" and not s.is_observed and not s.infer.get("is_auxiliary")
        }

    size = 1
    for s in sample_shape:
        size *= s
    if not sample_shape:
        return one(rng_key)
    drawn = jax.vmap(one)(random.split(rng_key, size))
    return {k: jnp.reshape(v, sample_shape + jnp.shape(v)[1:]) for k, v in drawn.items()}
