"""NumPyro's start-of-script helpers, thin over JAX's and XLA's own configuration.

``set_platform``, ``set_host_device_count`` and ``enable_x64`` behave as NumPyro's
(``numpyro/util.py``); ``enable_validation`` switches the validation of
``numpyro.distributions``, the distribution library plait uses as is.
"""

from __future__ import annotations

import importlib.util
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import jax

from plait.errors import ConfigError

__all__ = [
    "enable_validation",
    "enable_x64",
    "set_host_device_count",
    "set_platform",
    "validation_enabled",
]

_PLATFORMS: tuple[str, ...] = ("cpu", "cuda", "rocm", "tpu", "METAL")
_LEGACY_PLATFORMS: tuple[str, ...] = ("cpu", "gpu", "tpu")
_TRUE = frozenset({"y", "yes", "t", "true", "on", "1"})
_FALSE = frozenset({"n", "no", "f", "false", "off", "0", ""})


def enable_x64(use_x64: bool = True) -> None:
    """Make JAX use 64-bit floats and ints by default (``jax_enable_x64``).

    As NumPyro's: ``enable_x64(False)`` falls back to the ``JAX_ENABLE_X64`` environment
    variable. Unlike NumPyro's, ``JAX_ENABLE_X64=0`` (or ``false``) reads as false, as
    JAX reads it (NumPyro's ``bool(os.getenv(...))`` turns any non-empty string on).

    Args:
        use_x64: ``True`` for 64 bits, ``False`` for 32 bits (unless the environment
            variable asks for 64).

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import plait
        >>> before = jax.config.jax_enable_x64
        >>> plait.enable_x64()
        >>> jnp.zeros(1).dtype
        dtype('float64')
        >>> jax.config.update("jax_enable_x64", before)
    """
    if not use_x64:
        use_x64 = _env_flag("JAX_ENABLE_X64")
    jax.config.update("jax_enable_x64", use_x64)  # type: ignore[no-untyped-call]


def _env_flag(name: str) -> bool:
    value = os.getenv(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(
        f"the environment variable {name}={os.getenv(name)!r} is not a truth value; use "
        "1/true/yes/on or 0/false/no/off."
    )


def set_platform(platform: str | None = None) -> None:
    """Choose the JAX platform: ``"cpu"``, ``"cuda"``, ``"rocm"``, ``"tpu"``, ``"METAL"``,
    or a comma-separated list of them (``jax_platforms``).

    As NumPyro's: takes effect only at the start of a program (before JAX runs
    anything); ``None`` reads ``JAX_PLATFORMS`` or defaults to ``"cpu"``; the deprecated
    ``JAX_PLATFORM_NAME`` is honoured with a warning.

    Args:
        platform: the platform(s), or ``None`` for the environment's choice.

    Raises:
        ConfigError: a platform is not one of the names above (an ``AssertionError``, as
            in NumPyro, and a ``ValueError``).

    Example:
        >>> import plait
        >>> plait.set_platform("cpu")
    """
    flag = "jax_platforms"
    valid = _PLATFORMS
    if platform is None:
        legacy = os.getenv("JAX_PLATFORM_NAME")
        if legacy is not None:
            warnings.warn(
                "`JAX_PLATFORM_NAME` is deprecated; use `JAX_PLATFORMS`.", stacklevel=2
            )
            platform, valid, flag = legacy, _LEGACY_PLATFORMS, "jax_platform_name"
        else:
            platform = os.getenv("JAX_PLATFORMS", "cpu")
    wrong = [p.strip() for p in platform.split(",") if p.strip() not in valid]
    if wrong:
        raise ConfigError(
            f"set_platform({platform!r}): invalid platform {', '.join(map(repr, wrong))}; "
            f"valid platforms are: {', '.join(valid)}."
        )
    jax.config.update(flag, platform)  # type: ignore[no-untyped-call]


def set_host_device_count(n: int) -> None:
    """Tell XLA to show ``n`` CPU devices (to run chains or shards in parallel on a CPU).

    As NumPyro's: sets ``--xla_force_host_platform_device_count=n`` in ``XLA_FLAGS``,
    replacing an earlier value and keeping the other flags, so it takes effect only at
    the start of a program, before JAX runs anything.

    Args:
        n: the number of CPU devices.

    Example:
        >>> import os
        >>> import plait
        >>> saved = os.environ.get("XLA_FLAGS")
        >>> plait.set_host_device_count(4)
        >>> "--xla_force_host_platform_device_count=4" in os.environ["XLA_FLAGS"]
        True
        >>> if saved is None:
        ...     del os.environ["XLA_FLAGS"]
        ... else:
        ...     os.environ["XLA_FLAGS"] = saved
    """
    flags = re.sub(
        r"--xla_force_host_platform_device_count=\S+", "", os.getenv("XLA_FLAGS", "")
    ).split()
    os.environ["XLA_FLAGS"] = " ".join([f"--xla_force_host_platform_device_count={n}", *flags])


def _numpyro_installed() -> bool:
    return importlib.util.find_spec("numpyro") is not None


def enable_validation(is_validate: bool = True) -> None:
    """Switch the validation checks of ``numpyro.distributions`` on (or off).

    Distributions then check their arguments and warn on values out of their support,
    exactly as under ``numpyro.enable_validation`` (which this calls). It does not act
    under ``jax.jit`` or ``jax.vmap``. Without numpyro installed there is nothing to
    switch.

    Args:
        is_validate: whether to validate.

    Example:
        >>> import numpyro.distributions as dist
        >>> import plait
        >>> plait.enable_validation(False)
        >>> float(dist.Normal(0.0, -1.0).scale)  # not checked
        -1.0
        >>> plait.enable_validation()  # numpyro's default
        >>> try:
        ...     dist.Normal(0.0, -1.0)
        ... except ValueError as error:
        ...     print(error)
        Normal distribution got invalid scale parameter.
    """
    if _numpyro_installed():
        from numpyro import enable_validation as numpyro_enable_validation

        numpyro_enable_validation(is_validate)


@contextmanager
def validation_enabled(is_validate: bool = True) -> Iterator[None]:
    """Validate (or not) inside a ``with`` block; the previous setting comes back after.

    Example:
        >>> import numpyro.distributions as dist
        >>> import plait
        >>> with plait.validation_enabled():
        ...     dist.Normal(0.0, -1.0)
        Traceback (most recent call last):
        ...
        ValueError: Normal distribution got invalid scale parameter.
    """
    if not _numpyro_installed():
        yield
        return
    from numpyro import validation_enabled as numpyro_validation_enabled

    with numpyro_validation_enabled(is_validate):
        yield
