"""A data plate split over 4 simulated CPU devices (``plait.handlers.shard``) gives the
unsharded results, with each device computing on its own rows.

The models run in a subprocess (``tests/sharding_worker.py``) started with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``; each result there is computed twice,
without and with ``shard``, and compared here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from jax.sharding import AxisType, Mesh

import plait
from plait.errors import HandlerError
from plait.handlers import seed, shard

WORKER = Path(__file__).with_name("sharding_worker.py")


def run_worker(group: str, timeout: float) -> dict[str, Any]:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    env.pop("JAX_ENABLE_X64", None)
    done = subprocess.run(
        [sys.executable, str(WORKER), group],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def evaluated() -> dict[str, Any]:
    return run_worker("evaluate", timeout=300)


@pytest.fixture(scope="module")
def looped() -> dict[str, Any]:
    return run_worker("loops", timeout=600)


def assert_trees_close(a: Any, b: Any, rtol: float, atol: float = 0.0) -> None:
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_the_worker_sees_four_devices_and_splits_the_data(evaluated: dict[str, Any]) -> None:
    assert evaluated["devices"] == 4
    assert evaluated["data_sharding"] == "P('data',)"


def test_sharded_log_density_and_gradient_equal_the_unsharded_ones(
    evaluated: dict[str, Any],
) -> None:
    unsharded, sharded = evaluated["log_density"]
    assert_trees_close(sharded, unsharded, rtol=1e-5, atol=1e-5)  # float32 sums, reordered


def test_each_device_compiles_for_its_rows_and_all_reduces(evaluated: dict[str, Any]) -> None:
    # The per-device program holds x's (N/4, D) block, never the whole (N, D), and the sum
    # over the plate is an all-reduce; without shard it is the reverse.
    assert evaluated["compiled"] == {"all_reduce": True, "full_rows": False, "own_rows": True}
    assert evaluated["compiled_unsharded"] == {
        "all_reduce": False,
        "full_rows": True,
        "own_rows": False,
    }


def test_a_subsampled_sharded_plate_never_gathers_the_whole_data(
    evaluated: dict[str, Any],
) -> None:
    # The ELBO gradient with subsample_size=8: each device holds its (N/4, D) rows, the
    # 8 chosen rows are gathered (masked, all-reduced), never all N.
    assert evaluated["compiled_subsampled"] == {
        "all_reduce": True,
        "full_rows": False,
        "own_rows": True,
    }


def test_sharded_predictive_draws_what_the_unsharded_one_draws(evaluated: dict[str, Any]) -> None:
    unsharded, sharded = evaluated["predictive"]
    assert set(sharded) == {"w", "s", "z", "mean", "y"}
    assert_trees_close(sharded, unsharded, rtol=1e-6, atol=1e-6)


def test_scan_inside_a_sharded_plate_gives_the_unsharded_log_density(
    evaluated: dict[str, Any],
) -> None:
    unsharded, sharded = evaluated["scan"]
    np.testing.assert_allclose(sharded, unsharded, rtol=1e-6)


@pytest.mark.slow
def test_sharded_svi_with_subsampling_follows_the_unsharded_run(looped: dict[str, Any]) -> None:
    (loc, losses), (sharded_loc, sharded_losses) = looped["svi"]
    assert len(losses) == 100
    np.testing.assert_allclose(sharded_losses, losses, rtol=1e-9)
    np.testing.assert_allclose(sharded_loc, loc, rtol=1e-9)


@pytest.mark.slow
def test_sharded_nuts_draws_what_unsharded_nuts_draws(looped: dict[str, Any]) -> None:
    # float64, 10 + 10 steps: rounding differences of the reordered sums stay ~1e-11 (NUTS
    # amplifies them ~10x a step, so long runs part ways like any two float orders).
    unsharded, sharded = looped["nuts"]
    assert np.shape(sharded["z"]) == (10, 64)
    assert_trees_close(sharded, unsharded, rtol=1e-8, atol=1e-8)


@pytest.mark.slow
def test_sharded_plate_under_parallel_chains_is_a_clear_error(looped: dict[str, Any]) -> None:
    message = looped["parallel_chains_error"]
    assert "site 'z'" in message and "chain_method='vectorized'" in message


# -- the handler's own checks (one device) ------------------------------------------------
def auto_mesh() -> Mesh:
    return Mesh(np.array(jax.devices()[:1]), ("data",))


def test_shard_refuses_explicit_mesh_axes() -> None:
    explicit = jax.make_mesh((1,), ("data",), axis_types=(AxisType.Explicit,))
    with pytest.raises(HandlerError, match=r"axes are of type Auto.*axis_types"):
        shard(lambda: None, explicit, {"data": "data"})


def test_shard_refuses_an_axis_the_mesh_lacks() -> None:
    with pytest.raises(HandlerError, match=r"plate 'data' is assigned the mesh axis 'batch'"):
        shard(lambda: None, auto_mesh(), {"data": "batch"})


def test_shard_needs_plates() -> None:
    with pytest.raises(HandlerError, match="needs the plates to split"):
        shard(lambda: None, auto_mesh(), {})


def constraint_specs(fn: Any, *args: Any) -> list[str]:
    """The partition specs of the sharding constraints ``fn(*args)`` stages out."""
    jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    return [str(e.params["sharding"].spec) for e in jaxpr.eqns if e.params.get("sharding")]


def test_shard_splits_the_plate_dim_left_of_the_event_dims() -> None:
    def model(y: Any) -> None:
        with plait.plate("data", 8):
            plait.sample("y", dist.Normal(jnp.zeros((8, 3)), 1.0).to_event(1), obs=y)

    specs = constraint_specs(shard(model, auto_mesh(), {"data": "data"}), jnp.zeros((8, 3)))
    assert specs == ["P('data', None)"]


def test_shard_splits_only_the_named_plate_of_nested_plates() -> None:
    def model() -> None:
        with plait.plate("data", 8, dim=-2), plait.plate("features", 4):
            plait.sample("x", dist.Normal(0.0, 1.0))

    specs = constraint_specs(seed(shard(model, auto_mesh(), {"data": "data"}), 0))
    assert specs == ["P('data', None)"]


def test_shard_splits_a_local_param_before_the_plate_subsamples_it() -> None:
    def model() -> Any:
        with plait.plate("data", 8, subsample_size=4):
            return plait.param("loc", jnp.zeros(8), event_dim=0)

    # the whole param (8 rows) is split; the plate then takes its 4 rows
    sharded = seed(shard(model, auto_mesh(), {"data": "data"}), 0)
    assert constraint_specs(sharded) == ["P('data',)"]
    assert jax.eval_shape(sharded).shape == (4,)
