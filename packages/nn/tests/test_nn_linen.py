"""The Flax linen adapter against NumPyro's ``flax_module`` / ``random_flax_module``: same
model, same seed, same parameters, outputs, state and log density."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

linen = pytest.importorskip("flax.linen")

from numpyro import handlers as nh  # noqa: E402
from numpyro.contrib.module import flax_module as np_flax_module  # noqa: E402
from numpyro.contrib.module import random_flax_module as np_random_flax_module  # noqa: E402
from numpyro.infer.util import log_density as np_log_density  # noqa: E402

import plait  # noqa: E402
from plait.errors import SiteError  # noqa: E402
from plait.handlers import seed, substitute, trace  # noqa: E402
from plait.infer import log_density  # noqa: E402
from plait.nn import ParamShape, flax_module, random_flax_module  # noqa: E402

X = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)), dtype=jnp.float32)


class Inner(linen.Module):
    @linen.compact
    def __call__(self, x):
        return linen.Dense(4, name="dense")(x)


class Net(linen.Module):
    train: bool = True

    @linen.compact
    def __call__(self, x):
        h = Inner(name="inner")(x)
        h = linen.BatchNorm(use_running_average=not self.train, momentum=0.9)(h)
        return linen.Dense(1)(linen.relu(h))


class Dropped(linen.Module):
    @linen.compact
    def __call__(self, x, train=True):
        return linen.Dropout(0.5, deterministic=not train)(linen.Dense(2)(x))


def allclose_trees(a, b, rtol=1e-6):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=1e-7)


def both(build):
    """The traces of ``build(lib, module_fn)`` under plait and under NumPyro, seed 0."""
    ours = trace(seed(lambda x: build(plait, flax_module)(x), rng_seed=0)).get_trace(X)
    theirs = nh.trace(nh.seed(lambda x: build(numpyro, np_flax_module)(x), rng_seed=0)).get_trace(X)
    return ours, theirs


def test_params_state_and_output_match_numpyros_flax_module() -> None:
    def build(lib, module_fn):
        def model(x):
            net = module_fn("net", Net(), input_shape=(1, 3), mutable=["batch_stats"])
            lib.deterministic("out", net(x))

        return model

    ours, theirs = both(build)
    allclose_trees(ours["net$params"].value, theirs["net$params"]["value"])
    assert ours["net$state"].type == "mutable"
    allclose_trees(ours["net$state"].value, theirs["net$state"]["value"])
    np.testing.assert_allclose(ours["out"].value, theirs["out"]["value"], rtol=1e-6)
    # the state was updated in place by the call (batch statistics moved)
    assert not np.allclose(ours["net$state"].value["batch_stats"]["BatchNorm_0"]["mean"], 0.0)


def test_substituted_params_are_used_and_not_initialised() -> None:
    net = linen.Dense(2)
    params = {"kernel": jnp.ones((3, 2)), "bias": jnp.arange(2.0)}

    def model(x):
        return flax_module("net", net, input_shape=(1, 3))(x)

    out = substitute(model, data={"net$params": params})(X)  # no seed needed
    np.testing.assert_allclose(out, X @ params["kernel"] + params["bias"], rtol=1e-6)


def test_apply_rng_keys_dropout_as_numpyro_does() -> None:
    def build(lib, module_fn):
        def model(x):
            net = module_fn("net", Dropped(), input_shape=(1, 3), apply_rng=["dropout"])
            lib.deterministic("out", net(x, rngs={"dropout": lib.prng_key()}))

        return model

    ours, theirs = both(build)
    allclose_trees(ours["net$params"].value, theirs["net$params"]["value"])
    np.testing.assert_allclose(ours["out"].value, theirs["out"]["value"], rtol=1e-6)


def test_init_from_example_args_instead_of_input_shape() -> None:
    def model(x):
        return flax_module("net", linen.Dense(5), x)(x)

    assert seed(model, rng_seed=0)(X).shape == (6, 5)


def test_random_flax_module_sites_and_log_density_match_numpyro() -> None:
    prior = {"inner.dense.kernel": dist.Normal(0.0, 2.0), "Dense_0.bias": dist.Cauchy(0.0, 1.0)}

    def build(lib, random_fn):
        def model(x):
            net = random_fn("net", Net(), prior, input_shape=(1, 3), mutable=["batch_stats"])
            lib.sample("y", dist.Normal(net(x), 1.0), obs=jnp.zeros((6, 1)))

        return model

    ours_model = build(plait, random_flax_module)
    theirs_model = build(numpyro, np_random_flax_module)
    ours = trace(seed(ours_model, rng_seed=1)).get_trace(X)
    theirs = nh.trace(nh.seed(theirs_model, rng_seed=1)).get_trace(X)
    samples = [k for k, v in ours.items() if v.type == "sample" and not v.is_observed]
    assert samples == [
        k for k, v in theirs.items() if v["type"] == "sample" and not v["is_observed"]
    ]
    assert samples == ["net/Dense_0.bias", "net/inner.dense.kernel"]
    for k in samples:
        np.testing.assert_allclose(ours[k].value, theirs[k]["value"], rtol=1e-6)
    # drawn leaves are ParamShape in the params site; the others stay arrays
    params = ours["net$params"].value
    assert params["inner"]["dense"]["kernel"] == ParamShape((3, 4))
    assert not isinstance(params["Dense_0"]["kernel"], ParamShape)
    names = [*samples, "net$params", "net$state"]
    ours_lp, _ = log_density(ours_model, (X,), {}, {k: ours[k].value for k in names})
    theirs_lp, _ = np_log_density(theirs_model, (X,), {}, {k: theirs[k]["value"] for k in names})
    np.testing.assert_allclose(ours_lp, theirs_lp, rtol=1e-5)


def test_random_flax_module_with_a_prior_for_every_leaf() -> None:
    def model(x):
        net = random_flax_module("net", linen.Dense(2), dist.Normal(0.0, 1.0), input_shape=(1, 3))
        return net(x)

    tr = trace(seed(model, rng_seed=0)).get_trace(X)
    assert tr["net$params"].value == {"bias": ParamShape((2,)), "kernel": ParamShape((3, 2))}
    assert tr["net/kernel"].fn.event_shape == (3, 2)


def test_a_module_with_no_params_is_a_value_error() -> None:
    class Free(linen.Module):
        @linen.compact
        def __call__(self, x):
            return x * 2

    with pytest.raises(ValueError, match=re.escape("network 'net' has no parameters")):
        seed(lambda x: flax_module("net", Free(), input_shape=(1, 3)), rng_seed=0)(X)


def test_an_nnx_module_is_refused_with_the_adapter_to_use() -> None:
    nnx = pytest.importorskip("flax.nnx")
    with pytest.raises(SiteError, match=re.escape("use plait.nn.flax_nnx_module")):
        flax_module("net", nnx.Linear(3, 1, rngs=nnx.Rngs(0)), input_shape=(1, 3))
