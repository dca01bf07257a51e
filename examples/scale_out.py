"""NUTS across processes: chains over every device of every host, or the data split.

The multi-host recipe of ``docs/scale-out.md``. Start one copy per process (one per host,
typically), with the same arguments and its own ``--process-id``::

    python examples/scale_out.py --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0
    python examples/scale_out.py --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 1

``--split chains`` runs ``MCMC(..., chain_method="parallel")``: one mesh over all devices
of all processes, the chains split over it. ``--split data`` gives each process only its
rows of the data; the ``data`` plate is split over all devices
(``plait.handlers.shard``), so each device evaluates its rows and the log density is
summed by a collective; the chains are vectorised. Every process runs the same program
and ends with every draw (gathered), so each prints the same summary.

Without ``--coordinator`` it runs in one process. ``--cpu-devices K`` simulates K CPU
devices per process, to try the recipe on one machine (as ``tests/test_scale_out.py``
does, with two processes on the loopback address).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from plait import plate, sample
from plait.handlers import shard

TRUE_W = np.array([1.0, -2.0, 0.5])


def model(x: Any, y: Any) -> None:
    """Bayesian logistic regression."""
    w = sample("w", dist.Normal(jnp.zeros(x.shape[1]), 1.0).to_event(1))
    b = sample("b", dist.Normal(0.0, 1.0))
    with plate("data", x.shape[0]):
        sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)


def load_rows(start: int, stop: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``start:stop`` of the data set (synthetic here: read your own rows instead)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, TRUE_W.shape[0]))
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(x @ TRUE_W + 0.3)))).astype(x.dtype)
    return x[start:stop], y[start:stop]


def split_rows(n: int) -> tuple[np.ndarray, np.ndarray, Any]:
    """This process's rows, as one global array split over every device of the mesh."""
    mesh = Mesh(np.array(jax.devices()), ("data",))
    rows = NamedSharding(mesh, PartitionSpec("data"))
    per_process = n // jax.process_count()
    start = jax.process_index() * per_process
    x, y = load_rows(start, start + per_process, n)
    x_all = jax.make_array_from_process_local_data(rows, x, (n, x.shape[1]))
    y_all = jax.make_array_from_process_local_data(rows, y, (n,))
    return x_all, y_all, mesh


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--coordinator", help="host:port of process 0 (several processes)")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--cpu-devices", type=int, help="simulate this many CPU devices")
    parser.add_argument("--split", choices=("chains", "data"), default="chains")
    parser.add_argument("--n", type=int, default=1000, help="rows of data")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args(argv)

    if args.cpu_devices:  # before JAX starts its backend
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    if args.coordinator:
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
            initialization_timeout=120,
        )
    # Only now: importing BlackJAX (plait.infer's sampler) starts JAX's backend, after which
    # neither jax.distributed.initialize nor the device count can be set.
    from plait.infer import MCMC, NUTS

    if args.split == "chains":
        x, y = (jnp.asarray(a) for a in load_rows(0, args.n, args.n))
        mcmc = MCMC(
            NUTS(model),
            num_warmup=args.warmup,
            num_samples=args.samples,
            num_chains=args.chains,
            chain_method="parallel",
            progress_bar=False,
        )
        mcmc.run(jax.random.key(0), x, y)
    else:
        x, y, mesh = split_rows(args.n)
        mcmc = MCMC(
            NUTS(shard(model, mesh, {"data": "data"})),
            num_warmup=args.warmup,
            num_samples=args.samples,
            num_chains=args.chains,
            chain_method="vectorized",  # the devices split the data, not the chains
            progress_bar=False,
        )
        mcmc.run(jax.random.key(0), x, y)

    draws = mcmc.get_samples(group_by_chain=True)
    summary = {
        "process": jax.process_index(),
        "processes": jax.process_count(),
        "devices": jax.device_count(),
        "mean": {k: np.asarray(v).mean(axis=(0, 1)).tolist() for k, v in draws.items()},
        "draws": {k: np.asarray(v).tolist() for k, v in draws.items()},
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
