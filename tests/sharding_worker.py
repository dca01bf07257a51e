"""The same models with and without ``plait.handlers.shard``, on several CPU devices.

``tests/test_sharding.py`` runs this script in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``: ``python tests/sharding_worker.py
GROUP`` prints one JSON line with, for each check of ``GROUP`` (``evaluate`` or ``loops``),
the unsharded and the sharded result and what XLA compiled. Importing it does nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import plait
from plait.control_flow import scan
from plait.handlers import seed, shard, trace
from plait.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO, log_density

N, D, T = 64, 3, 5  # rows (16 a device), features, time steps
SUBSAMPLE = 8  # a minibatch of 2 rows a device


def regression(x: Any, y: Any) -> None:
    """Linear regression with a per-row latent ``z`` in the data plate."""
    w = plait.sample("w", dist.Normal(jnp.zeros(D), 1.0).to_event(1))
    s = plait.sample("s", dist.HalfNormal(1.0))
    with plait.plate("data", x.shape[0]):
        z = plait.sample("z", dist.Normal(0.0, 1.0))
        plait.deterministic("mean", x @ w + 0.1 * z)
        plait.sample("y", dist.Normal(x @ w + 0.1 * z, s), obs=y)


def subsampled(x: Any, y: Any) -> None:
    w = plait.sample("w", dist.Normal(jnp.zeros(D), 1.0).to_event(1))
    with plait.plate("data", x.shape[0], subsample_size=SUBSAMPLE) as idx:
        plait.sample("y", dist.Normal(x[idx] @ w, 0.5), obs=y[idx])


def subsampled_guide(x: Any, y: Any) -> None:
    loc = plait.param("loc", jnp.zeros(D))
    plait.sample("w", dist.Normal(loc, 0.1).to_event(1))


def series(y: Any) -> None:
    """``N`` independent AR(1) series in a plate, each a ``scan`` over time."""
    rho = plait.sample("rho", dist.Uniform(-1.0, 1.0))
    with plait.plate("data", y.shape[1]):

        def step(h: Any, y_t: Any) -> tuple[Any, None]:
            h = plait.sample("h", dist.Normal(rho * h, 1.0))
            plait.sample("y", dist.Normal(h, 0.5), obs=y_t)
            return h, None

        scan(step, jnp.zeros(y.shape[1]), y)


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.5 * rng.normal(size=N)
    return x, y, rng.normal(size=(T, N))


def tolist(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64).tolist(), tree)


def compiled_shapes(fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
    """Facts about the per-device program XLA compiled for ``fn(*args)``."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    return {
        "all_reduce": "all-reduce" in text,
        "full_rows": f"[{N},{D}]" in text,  # x whole: (N, D)
        "own_rows": f"[{N // 4},{D}]" in text,  # x of one device: (N / 4, D)
    }


def evaluate() -> dict[str, Any]:
    """log density (value and gradient), its compiled program, Predictive, ``scan``."""
    mesh = Mesh(np.array(jax.devices()), ("data",))
    rows = NamedSharding(mesh, PartitionSpec("data"))
    x, y, ys = (jnp.asarray(a, jnp.float32) for a in data())
    xs, yss = jax.device_put((x, y), rows)
    sharded = shard(regression, mesh, {"data": "data"})
    params = {"w": jnp.array([0.3, 0.1, -0.2]), "s": jnp.array(0.7), "z": jnp.linspace(-1, 1, N)}

    def value_and_grad(model: Any) -> Callable[..., Any]:
        return jax.value_and_grad(lambda p, a, b: log_density(model, (a, b), {}, p)[0])

    out: dict[str, Any] = {
        "devices": jax.device_count(),
        "data_sharding": str(xs.sharding.spec),
        "log_density": tolist(
            [
                jax.jit(value_and_grad(m))(params, a, b)
                for m, a, b in ((regression, x, y), (sharded, xs, yss))
            ]
        ),
        "compiled": compiled_shapes(value_and_grad(sharded), params, xs, yss),
        "compiled_unsharded": compiled_shapes(value_and_grad(regression), params, x, y),
    }

    def elbo_grad(model: Any) -> Callable[..., Any]:
        def loss(p: Any, a: Any, b: Any) -> Any:
            return Trace_ELBO().loss(jax.random.key(1), p, model, subsampled_guide, a, b)

        return jax.grad(loss)

    out["compiled_subsampled"] = compiled_shapes(
        elbo_grad(shard(subsampled, mesh, {"data": "data"})), {"loc": jnp.zeros(D)}, xs, yss
    )
    out["predictive"] = tolist(
        [
            jax.jit(lambda a, b, m=m: Predictive(m, num_samples=3)(jax.random.key(2), a, b))(a, b)
            for m, a, b in ((regression, x, y), (sharded, xs, yss))
        ]
    )
    series_rows = jax.device_put(ys, NamedSharding(mesh, PartitionSpec(None, "data")))
    h = trace(seed(series, 0)).get_trace(ys)["h"].value
    sharded_series = shard(series, mesh, {"data": "data"})
    out["scan"] = tolist(
        [
            jax.jit(lambda p, a, m=m: log_density(m, (a,), {}, p)[0])({"rho": 0.3, "h": h}, a)
            for m, a in ((series, ys), (sharded_series, series_rows))
        ]
    )
    return out


def loops() -> dict[str, Any]:
    """SVI with a subsampled plate and NUTS, in float64 (their chains amplify rounding)."""
    jax.config.update("jax_enable_x64", True)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    rows = NamedSharding(mesh, PartitionSpec("data"))
    x, y, _ = (jnp.asarray(a) for a in data())
    xs, ys = jax.device_put((x, y), rows)
    out: dict[str, Any] = {"svi": [], "nuts": []}
    for model, a, b in ((subsampled, x, y), (shard(subsampled, mesh, {"data": "data"}), xs, ys)):
        svi = SVI(model, subsampled_guide, optax.adam(0.05), Trace_ELBO())
        result = svi.run(jax.random.key(1), 100, a, b, progress_bar=False)
        out["svi"].append(tolist([result.params["loc"], result.losses]))
    for model, a, b in ((regression, x, y), (shard(regression, mesh, {"data": "data"}), xs, ys)):
        mcmc = MCMC(NUTS(model), num_warmup=10, num_samples=10, progress_bar=False)
        mcmc.run(jax.random.key(0), a, b)
        samples = mcmc.get_samples()
        out["nuts"].append(tolist({k: samples[k] for k in ("w", "s", "z")}))
    parallel = MCMC(
        NUTS(shard(regression, mesh, {"data": "data"})),
        num_warmup=5,
        num_samples=5,
        num_chains=4,
        chain_method="parallel",
        progress_bar=False,
    )
    try:
        parallel.run(jax.random.key(0), xs, ys)
    except plait.HandlerError as error:
        out["parallel_chains_error"] = str(error)
    return out


def main(argv: list[str]) -> None:
    group = {"evaluate": evaluate, "loops": loops}[argv[0]]
    print(json.dumps(group()))


if __name__ == "__main__":
    main(sys.argv[1:])
