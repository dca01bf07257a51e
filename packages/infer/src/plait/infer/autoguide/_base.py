"""``AutoGuide``: the base of the automatic guides (NumPyro's ``AutoGuide``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array, random

from plait import PlateFrame, current_stack, plate, prng_key
from plait.errors import SiteError
from plait.handlers import block, seed, substitute, trace
from plait.infer._init import InitStrategy, init_to_uniform
from plait.infer._log_density import unconstrained
from plait.infer.autoguide._prototype import Prototype, find_prototype, is_latent

__all__ = ["AutoGuide", "PlateError"]


class PlateError(SiteError, AssertionError):
    """A plate seen with different dims or sizes (an ``AssertionError`` in NumPyro, and a
    ``ValueError`` like every plait site error)."""


class AutoGuide:
    """Base of the automatic guides: each reads its model's latents off one prototype run.

    On its first call the guide runs the model once, hidden from outer handlers and
    seeded with a key from the enclosing ``seed`` (NumPyro's ``initialize_model``), to
    learn each continuous latent's shape, support and plates and a valid starting point.
    Plates are identified by name, dim and size: two plates named alike that differ in
    either are an error. Discrete sites marked for enumeration are left to the model
    (``TraceEnum_ELBO``).

    Args:
        model: the model.
        prefix: the prefix of the guide's param names (``{site}_{prefix}_loc``).
        init_loc_fn: where the guide starts (an init strategy, e.g. ``init_to_median``).
        create_plates: a function of the model's arguments returning a ``plate`` or
            plates to use instead of the ones the guide creates (for subsampling with
            your own indices).
        forward_mode_differentiation: accepted for NumPyro compatibility (the prototype
            needs no derivative beyond its validity check).
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
        self.model = model
        self.prefix = prefix
        self.init_loc_fn = init_loc_fn
        self.create_plates = create_plates
        self._forward_mode_differentiation = forward_mode_differentiation
        self.prototype_trace: dict[str, Any] | None = None
        self._prototype: Prototype | None = None
        self._prototype_frames: dict[str, PlateFrame] = {}
        self._prototype_frame_full_sizes: dict[str, int] = {}
        self._init_locs: dict[str, Array] = {}
        self._setup_args: tuple[tuple[Any, ...], dict[str, Any]] = ((), {})

    # -- the prototype -----------------------------------------------------------------
    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        key = prng_key() if current_stack() else None
        key = random.key(0) if key is None else key
        with block():
            prototype = self._find_prototype(key, args, kwargs)
        self._prototype = prototype
        self.prototype_trace = prototype.trace
        self._init_locs = dict(prototype.init_locs)
        self._setup_args = (args, dict(kwargs))
        self._prototype_frames = {}
        self._prototype_frame_full_sizes = {}
        for name, site in prototype.trace.items():
            if site.type == "plate":
                self._prototype_frame_full_sizes[name] = site.args[0]
            elif site.type == "sample" and not site.is_observed:
                # Observed sites may subsample differently; they make no plates.
                for frame in site.cond_indep_stack:
                    known = self._prototype_frames.get(frame.name)
                    if known is None:
                        self._prototype_frames[frame.name] = frame
                    elif known != frame:
                        raise PlateError(
                            name,
                            f"The plate {frame.name} has inconsistent dim or size: site "
                            f"'{name}' sees it with dim {frame.dim} and size {frame.size}, "
                            f"an earlier site with dim {known.dim} and size {known.size}. "
                            "Please check your model again: give different plates different "
                            "names.",
                        )

    def _find_prototype(
        self, key: Array, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Prototype:
        return find_prototype(key, self.model, self.init_loc_fn, args, kwargs, type(self).__name__)

    @property
    def _potential_fn(self) -> Callable[..., Any]:
        """Minus the model's log density at unconstrained latents, for the set-up
        arguments (NumPyro's ``guide._potential_fn``)."""
        assert self._prototype is not None
        args, kwargs = self._setup_args
        return self._prototype.potential_fn(args, kwargs)

    def _create_plates(self, *args: Any, **kwargs: Any) -> dict[str, plate]:
        plates: dict[str, plate] = {}
        if self.create_plates is not None:
            made = self.create_plates(*args, **kwargs)
            made_list = [made] if isinstance(made, plate) else list(made)
            for p in made_list:
                if not isinstance(p, plate):
                    raise TypeError(
                        f"create_plates() returned {type(p).__name__}, which is not a plate."
                    )
            plates = {p.name: p for p in made_list}
        for name, frame in sorted(self._prototype_frames.items()):
            if name not in plates:
                full_size = self._prototype_frame_full_sizes[name]
                plates[name] = plate(name, full_size, dim=frame.dim, subsample_size=frame.size)
        return plates

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("plates", None)
        return state

    # -- the guide ---------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Array]:
        """Draw every latent of the model from the guide (a dict by site name)."""
        raise NotImplementedError

    def sample_posterior(
        self,
        rng_key: Array,
        params: Mapping[str, Any],
        *args: Any,
        sample_shape: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> dict[str, Array]:
        """Draws from the fitted guide: every latent and deterministic site of the model.

        Args:
            rng_key: the key.
            params: the fitted params (``svi.get_params(state)``).
            *args: the model's arguments, for its deterministic sites (default: those of
                the guide's first call).
            sample_shape: leading sample dims of every draw.
            **kwargs: the model's keyword arguments.
        """
        raise NotImplementedError

    def median(self, params: Mapping[str, Any]) -> dict[str, Array]:
        """The posterior median of each latent under the fitted ``params``."""
        raise NotImplementedError

    def quantiles(self, params: Mapping[str, Any], quantiles: Iterable[float]) -> dict[str, Array]:
        """The posterior quantiles of each latent (a leading dim per quantile)."""
        raise NotImplementedError

    # -- helpers -----------------------------------------------------------------------
    def _latent_names(self) -> list[str]:
        assert self.prototype_trace is not None
        return [n for n, s in self.prototype_trace.items() if is_latent(s)]

    def _deterministic_names(self) -> list[str]:
        assert self.prototype_trace is not None
        return [n for n, s in self.prototype_trace.items() if s.type == "deterministic"]

    def _full_plates(self) -> dict[str, Array]:
        """Every subsampled plate at its full size: the guide's draws are full-size."""
        return {
            name: jnp.arange(size)
            for name, size in self._prototype_frame_full_sizes.items()
            if self._prototype_frames.get(name) is not None
            and self._prototype_frames[name].size != size
        }

    def _model_args(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], Mapping[str, Any]]:
        return (args, kwargs) if args or kwargs else self._setup_args

    def _complete(
        self,
        latents: Mapping[str, Array],
        params: Mapping[str, Any],
        batch_ndims: int,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        constrain: bool,
        full_size: bool = True,
    ) -> dict[str, Array]:
        """The constrained latents and the model's deterministic sites for draws
        ``latents`` (unconstrained with ``constrain``) with ``batch_ndims`` leading dims,
        running the model once per draw with every plate at its full size (or, without
        ``full_size``, at the prototype's subsample)."""
        deterministic = self._deterministic_names()
        if not constrain and not deterministic:
            return dict(latents)
        if constrain and not deterministic:
            assert self._prototype is not None
            transforms = self._prototype.transforms
            if all(_static_support(self.prototype_trace, n) for n in latents):
                return {n: transforms[n](v) for n, v in latents.items()}
        args, kwargs = self._model_args(args, kwargs)
        assert self.prototype_trace is not None
        plates = (
            self._full_plates()
            if full_size
            else {n: s.value for n, s in self.prototype_trace.items() if s.type == "plate"}
        )
        fixed = {**dict(params), **plates}
        model = seed(substitute(self.model, data=fixed) if fixed else self.model, 0)
        keep = [*latents, *deterministic]

        def one(z: Mapping[str, Array]) -> dict[str, Array]:
            run = (
                unconstrained(model, params=z, log_det=False)
                if constrain
                else substitute(model, data=z)
            )
            with block():
                tr = trace(run).get_trace(*args, **kwargs)
            return {n: tr[n].value for n in keep if n in tr}

        fn: Callable[[Any], dict[str, Array]] = one
        for _ in range(batch_ndims):
            fn = jax.vmap(fn)
        # One compiled replay (the arguments are constants of it), not one per operation.
        return jax.jit(fn)(latents)  # type: ignore[no-any-return]


def _static_support(tr: Any, name: str) -> bool:
    """The site's support has no bounds that depend on other values."""
    support = tr[name].fn.support
    for bound in ("lower_bound", "upper_bound"):
        value = getattr(support, bound, None)
        if value is not None and not isinstance(value, int | float):
            return False
    return True
