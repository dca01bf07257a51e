"""The ``Distribution`` protocol, and the check that turns a site's ``fn`` into one."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from jax import Array

from plait.errors import SiteTypeError

__all__ = ["Distribution", "as_distribution"]


@runtime_checkable
class Distribution(Protocol):
    """What plait needs of a distribution; ``numpyro.distributions`` satisfies it as is.

    Enumeration also reads ``has_enumerate_support`` and ``enumerate_support``, and
    inference reads ``support``; they are optional here.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import Distribution
        >>> isinstance(dist.Normal(0.0, 1.0), Distribution)
        True
    """

    @property
    def batch_shape(self) -> tuple[int, ...]: ...

    @property
    def event_shape(self) -> tuple[int, ...]: ...

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array: ...

    def log_prob(self, value: Any) -> Array: ...

    def expand(self, batch_shape: tuple[int, ...]) -> Distribution: ...

    def mask(self, mask: Any) -> Distribution: ...


_REQUIRED = ("batch_shape", "event_shape", "sample", "log_prob", "expand", "mask")
_CONFORMS: dict[type, bool] = {}


def _conforms(fn: object) -> bool:
    kind = type(fn)
    ok = _CONFORMS.get(kind)
    if ok is None:
        ok = all(hasattr(fn, attr) for attr in _REQUIRED)
        _CONFORMS[kind] = ok
    return ok


def as_distribution(site: str, fn: object) -> Distribution:
    """``fn`` itself if it satisfies :class:`Distribution`, else what a plugin adapts it to.

    The check is cached per type, so the plugin hook is asked once per foreign object.

    Raises:
        SiteTypeError: ``fn`` is not a distribution and no installed plugin adapts it.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import as_distribution
        >>> normal = dist.Normal(0.0, 1.0)
        >>> as_distribution("x", normal) is normal
        True
    """
    if _conforms(fn):
        return fn  # type: ignore[return-value]
    from plait._plugins import adapt_distribution

    adapted = adapt_distribution(fn)
    if adapted is None:
        kind = type(fn)
        raise SiteTypeError(
            site,
            f"site '{site}' got a {kind.__module__}.{kind.__qualname__}, which is not a "
            f"distribution (it lacks one of {', '.join(_REQUIRED)}) and no installed plait "
            "plugin adapts it. Use numpyro.distributions (pip install numpyro), or install "
            "a plugin that implements the plait_adapt_distribution hook for this type.",
        )
    return adapted
