"""One switch for JAX's persistent compilation cache, so that a new process running the
same model loads what an earlier one compiled instead of compiling it again.

plait adds no cache of its own: JAX keys each compiled program by its lowered module (the
traced computation, shapes, dtypes, shardings, devices, compiler flags and versions), so a
hit is exactly the program that would have been compiled. What plait guarantees is that
the programs ``MCMC.run``, ``SVI.run``, ``Predictive`` and a jitted ``log_density`` lower to
do not depend on the process (no object ids, hash orders or counters in them), so the key
of a second process matches; ``packages/infer/tests/test_infer_compile_cache.py`` checks
it with JAX's own cache statistics across processes with different hash seeds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import jax
from jax.experimental.compilation_cache import compilation_cache

__all__ = ["CACHE_ENV", "enable_compilation_cache"]

CACHE_ENV: Final = "PLAIT_COMPILATION_CACHE_DIR"
"""Set to a directory, it enables the cache there when ``plait.infer`` is imported."""

DEFAULT_MIN_COMPILE_TIME: Final = 0.0


def _default_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "plait" / "jax"


def _update(name: str, value: object) -> None:
    jax.config.update(name, value)  # type: ignore[no-untyped-call,unused-ignore]


def enable_compilation_cache(
    path: str | os.PathLike[str] | None = None,
    *,
    min_compile_time_secs: float = DEFAULT_MIN_COMPILE_TIME,
) -> Path:
    """Keep every program JAX compiles in ``path``, and load it from there next time.

    Turns on JAX's persistent compilation cache (``jax_compilation_cache_dir``), for
    programs that took at least ``min_compile_time_secs`` to compile (JAX's default is
    1 s; plait's 0 keeps also the many small programs of a short run). A second process
    running the same model with the same shapes then loads ``MCMC.run``'s, ``SVI.run``'s,
    ``Predictive``'s and a jitted ``log_density``'s programs instead of compiling them.
    Tracing still runs (it is how the key is found), so a changed model is never served
    a stale program.

    Setting the environment variable ``PLAIT_COMPILATION_CACHE_DIR`` to a directory does
    the same when ``plait.infer`` is imported. JAX's own ``JAX_COMPILATION_CACHE_DIR``
    works too, with JAX's 1 s threshold.

    Call it before the first compilation you want kept; calling it again with another
    path moves the cache there. The directory is trusted code: do not share it with users
    you do not trust (see JAX's documentation of the cache).

    Args:
        path: the directory (created if missing); default ``$PLAIT_COMPILATION_CACHE_DIR``,
            else ``$XDG_CACHE_HOME/plait/jax`` (``~/.cache/plait/jax``).
        min_compile_time_secs: keep programs that took at least this long to compile.

    Returns:
        The directory in use.

    Example:
        >>> import tempfile, jax
        >>> from plait.infer import enable_compilation_cache
        >>> where = enable_compilation_cache(tempfile.mkdtemp())
        >>> jax.config.jax_compilation_cache_dir == str(where)
        True
        >>> jax.config.update("jax_compilation_cache_dir", None)  # off again
    """
    if path is None:
        path = os.environ.get(CACHE_ENV) or _default_path()
    if min_compile_time_secs < 0:
        raise ValueError(f"min_compile_time_secs must be >= 0, got {min_compile_time_secs}.")
    where = Path(path).expanduser().resolve()
    where.mkdir(parents=True, exist_ok=True)
    previous = jax.config.values["jax_compilation_cache_dir"]
    _update("jax_enable_compilation_cache", True)
    _update("jax_compilation_cache_dir", str(where))
    _update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    if previous is not None and previous != str(where):
        # JAX opens its cache once; a new directory needs it reopened.
        compilation_cache.reset_cache()
    return where


if os.environ.get(CACHE_ENV):
    enable_compilation_cache(os.environ[CACHE_ENV])
