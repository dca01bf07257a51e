"""``enable_compilation_cache``: a second process running the same models loads every
program from JAX's persistent cache, as JAX's own cache statistics count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

from plait.infer import enable_compilation_cache

# Runs in a fresh process: each phase's compilations, as cache hits and misses.
WORKER = textwrap.dedent(
    """
    import json, sys
    from collections import Counter
    import jax, jax.numpy as jnp, optax
    import numpyro.distributions as dist
    import plait
    from plait.control_flow import scan
    from plait.infer import (
        MCMC, NUTS, SVI, AutoNormal, Predictive, Trace_ELBO, enable_compilation_cache,
        log_density,
    )

    enable_compilation_cache(sys.argv[1])
    events = Counter()
    jax.monitoring.register_event_listener(lambda name, **kw: events.update([name]))

    def model(y):
        mu = plait.sample("mu", dist.Normal(0.0, 1.0))
        s = plait.sample("s", dist.HalfNormal(1.0))
        with plait.plate("data", y.shape[0]):
            plait.sample("y", dist.Normal(mu, s), obs=y)

    def hmm(ys):  # an enumerated scan (plait-enum contracts it)
        A = jnp.array([[0.9, 0.1], [0.2, 0.8]])
        locs = plait.sample("locs", dist.Normal(jnp.zeros(2), 3.0).to_event(1))
        def step(z, y):
            z = plait.sample("z", dist.Categorical(A[z]), infer={"enumerate": "parallel"})
            plait.sample("y", dist.Normal(locs[z], 1.0), obs=y)
            return z, None
        scan(step, 0, ys)

    y = jnp.linspace(-1.0, 2.0, 20)
    counts = {}
    def phase(name, run):
        before = events.copy()
        jax.block_until_ready(run())
        new = events - before
        counts[name] = {
            "hits": new["/jax/compilation_cache/cache_hits"],
            "misses": new["/jax/compilation_cache/cache_misses"],
        }

    def nuts(m):
        mcmc = MCMC(NUTS(m), num_warmup=10, num_samples=10, progress_bar=False)
        mcmc.run(jax.random.key(0), y)
        return mcmc.get_samples()

    svi = SVI(model, AutoNormal(model), optax.adam(0.01), Trace_ELBO())
    grad = jax.jit(jax.grad(lambda p: log_density(hmm, (y,), {}, p)[0]))
    phase("MCMC.run", lambda: nuts(model))
    phase("MCMC.run enumerated scan", lambda: nuts(hmm))
    phase("SVI.run", lambda: svi.run(jax.random.key(1), 20, y, progress_bar=False).params)
    phase("Predictive", lambda: Predictive(model, num_samples=5)(jax.random.key(2), y))
    phase("jit(log_density)", lambda: grad({"locs": jnp.zeros(2)}))
    print(json.dumps(counts))
    """
)


def run_process(cache: Path, hash_seed: str) -> dict[str, dict[str, int]]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    for name in ("XLA_FLAGS", "JAX_ENABLE_X64", "PLAIT_COMPILATION_CACHE_DIR"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(cache)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    counts: dict[str, dict[str, int]] = json.loads(done.stdout.strip().splitlines()[-1])
    return counts


@pytest.mark.slow
def test_a_second_process_loads_every_program_from_the_cache(tmp_path: Path) -> None:
    # Different hash seeds: nothing that lowers may depend on set or dict-of-hash orders.
    first = run_process(tmp_path, hash_seed="1")
    second = run_process(tmp_path, hash_seed="2")
    assert list(second) == list(first)
    for phase in first:
        assert first[phase]["misses"] > 0, (phase, first[phase])
        assert second[phase]["misses"] == 0, (phase, second[phase])
        assert second[phase]["hits"] >= first[phase]["misses"], (phase, second[phase])


@pytest.fixture
def restore_cache_config() -> Iterator[None]:
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    saved: dict[str, Any] = {name: getattr(jax.config, name) for name in names}
    yield
    for name, value in saved.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


@pytest.mark.usefixtures("restore_cache_config")
def test_enable_sets_jax_cache_dir_and_keeps_small_programs(tmp_path: Path) -> None:
    where = enable_compilation_cache(tmp_path / "cache")
    assert where == (tmp_path / "cache").resolve() and where.is_dir()
    assert jax.config.jax_compilation_cache_dir == str(where)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    enable_compilation_cache(tmp_path / "other", min_compile_time_secs=0.5)
    assert jax.config.jax_compilation_cache_dir == str((tmp_path / "other").resolve())
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.5


@pytest.mark.usefixtures("restore_cache_config")
def test_negative_compile_time_threshold_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="min_compile_time_secs must be >= 0"):
        enable_compilation_cache(tmp_path, min_compile_time_secs=-1.0)


def test_environment_variable_enables_the_cache_on_import(tmp_path: Path) -> None:
    env = {**os.environ, "PLAIT_COMPILATION_CACHE_DIR": str(tmp_path)}
    code = "import jax, plait.infer; print(jax.config.jax_compilation_cache_dir)"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(tmp_path.resolve())
