"""The Flax NNX adapter, against a hand-written forward pass and NumPyro's ``nnx_module``."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

nnx = pytest.importorskip("flax.nnx")

from numpyro import handlers as nh  # noqa: E402
from numpyro.contrib.module import nnx_module, random_nnx_module  # noqa: E402

from plait.handlers import seed, substitute, trace  # noqa: E402
from plait.nn import ParamShape, flax_nnx_module, random_flax_nnx_module  # noqa: E402

X = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)), dtype=jnp.float32)
MOMENTUM, EPS = 0.99, 1e-5


class Net(nnx.Module):
    def __init__(self, *, train: bool, rngs):
        self.l1 = nnx.Linear(3, 4, rngs=rngs)
        self.bn = nnx.BatchNorm(4, use_running_average=not train, momentum=MOMENTUM, rngs=rngs)
        self.l2 = nnx.Linear(4, 1, rngs=rngs)

    def __call__(self, x):
        return self.l2(nnx.relu(self.bn(self.l1(x))))


def forward(p, x, *, mean=None, var=None):
    """The network by hand; batch statistics when ``mean`` is None."""
    h = x @ p["l1"]["kernel"] + p["l1"]["bias"]
    if mean is None:
        mean, var = h.mean(0), h.var(0)
    h = (h - mean) / jnp.sqrt(var + EPS) * p["bn"]["scale"] + p["bn"]["bias"]
    return jnp.maximum(h, 0.0) @ p["l2"]["kernel"] + p["l2"]["bias"]


def pure_params(module):
    return nnx.to_pure_dict(nnx.state(module, nnx.Param))


def allclose_trees(a, b, rtol=1e-6, atol=1e-7):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=atol)


def model(net, x):
    return flax_nnx_module("net", net)(x)


def test_params_round_trip_and_output_is_the_forward_pass():
    net = Net(train=True, rngs=nnx.Rngs(0))
    tr = trace(model).get_trace(net, X)
    assert [(k, v.type) for k, v in tr.items()] == [
        ("net$params", "param"),
        ("net$state", "mutable"),
    ]
    allclose_trees(tr["net$params"].value, pure_params(net), rtol=0)
    out = model(net, X)
    np.testing.assert_allclose(out, forward(pure_params(net), X), rtol=1e-5, atol=1e-6)


def test_substitute_replaces_params_and_gradients_flow():
    net = Net(train=True, rngs=nnx.Rngs(0))
    doubled = jax.tree.map(lambda a: 2 * a, pure_params(net))
    out = substitute(model, data={"net$params": doubled})(net, X)
    np.testing.assert_allclose(out, forward(doubled, X), rtol=1e-5, atol=1e-6)

    def loss(p):
        return substitute(model, data={"net$params": p})(net, X).sum()

    # Batch norm cancels the first bias, so its gradient is rounding noise (~1e-7): atol.
    allclose_trees(
        jax.grad(loss)(doubled),
        jax.grad(lambda p: forward(p, X).sum())(doubled),
        rtol=1e-4,
        atol=1e-5,
    )


def test_batch_norm_statistics_are_recorded_and_the_module_is_untouched():
    net = Net(train=True, rngs=nnx.Rngs(0))
    tr = trace(model).get_trace(net, X)
    p = pure_params(net)
    h = np.asarray(X @ p["l1"]["kernel"] + p["l1"]["bias"], np.float64)
    state = tr["net$state"].value["state"]["bn"]
    np.testing.assert_allclose(state["mean"], (1 - MOMENTUM) * h.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        state["var"], MOMENTUM + (1 - MOMENTUM) * h.var(0), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_array_equal(net.bn.mean[...], np.zeros(4))
    np.testing.assert_array_equal(net.bn.var[...], np.ones(4))


def test_substituted_state_is_used_in_evaluation_mode():
    net = Net(train=False, rngs=nnx.Rngs(0))
    mean, var = jnp.arange(4.0) / 4, jnp.full(4, 2.0)
    data = {"net$state": {"state": {"bn": {"mean": mean, "var": var}}}}
    out = substitute(model, data=data)(net, X)
    expected = forward(pure_params(net), X, mean=mean, var=var)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_jit_with_substituted_params_returns_updated_state():
    net = Net(train=True, rngs=nnx.Rngs(0))

    @jax.jit
    def run(p, x):
        tr = trace(substitute(model, data={"net$params": p})).get_trace(net, x)
        return tr["net$state"].value["state"]

    state = run(pure_params(net), X)
    eager = trace(model).get_trace(net, X)["net$state"].value["state"]
    allclose_trees(state, eager, rtol=1e-6)


def test_same_trace_and_values_as_numpyro_nnx_module():
    net = Net(train=True, rngs=nnx.Rngs(0))
    ours = trace(model).get_trace(net, X)
    theirs = nh.trace(lambda x: nnx_module("net", net)(x)).get_trace(X)
    assert list(ours) == list(theirs)
    assert [v.type for v in ours.values()] == [v["type"] for v in theirs.values()]
    allclose_trees(ours["net$params"].value, theirs["net$params"]["value"], rtol=0)
    allclose_trees(ours["net$state"].value, theirs["net$state"]["value"], rtol=1e-6)


def test_random_module_matches_numpyro_names_and_draws():
    net = Net(train=True, rngs=nnx.Rngs(0))
    prior = dist.Normal(0.0, 0.5)

    def ours_model(x):
        return random_flax_nnx_module("net", net, prior)(x)

    def theirs_model(x):
        return random_nnx_module("net", net, prior)(x)

    ours = trace(seed(ours_model, rng_seed=7)).get_trace(X)
    theirs = nh.trace(nh.seed(theirs_model, rng_seed=7)).get_trace(X)
    assert list(ours) == list(theirs)
    drawn = [k for k, v in ours.items() if v.type == "sample"]
    assert drawn == [
        "net/bn.bias",
        "net/bn.scale",
        "net/l1.bias",
        "net/l1.kernel",
        "net/l2.bias",
        "net/l2.kernel",
    ]
    for k in drawn:
        np.testing.assert_array_equal(ours[k].value, theirs[k]["value"])
        assert tuple(ours[k].fn.event_shape) == ours[k].value.shape
    assert ours["net$params"].value["l1"]["kernel"] == ParamShape((3, 4))
    p = jax.tree.map(lambda a: a, pure_params(net))
    for k in drawn:
        layer, leaf = k.removeprefix("net/").split(".")
        p[layer][leaf] = ours[k].value
    np.testing.assert_allclose(seed(ours_model, rng_seed=7)(X), forward(p, X), rtol=1e-5, atol=1e-6)


def test_random_module_dict_prior_keeps_unnamed_leaves_learnable():
    net = Net(train=True, rngs=nnx.Rngs(0))

    def bnn(x):
        return random_flax_nnx_module("net", net, {"l2.kernel": dist.Normal(0.0, 1.0)})(x)

    tr = trace(seed(bnn, rng_seed=0)).get_trace(X)
    assert [k for k, v in tr.items() if v.type == "sample"] == ["net/l2.kernel"]
    params = tr["net$params"].value
    assert params["l2"]["kernel"] == ParamShape((4, 1))
    np.testing.assert_array_equal(params["l1"]["kernel"], net.l1.kernel[...])


class Dropped(nnx.Module):
    def __init__(self, rngs):
        self.linear = nnx.Linear(3, 8, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        return self.dropout(self.linear(x))


def test_rng_state_is_threaded_through_the_state_site_under_jit_and_grad():
    net = Dropped(nnx.Rngs(0))
    model_fn = lambda x: flax_nnx_module("net", net)(x)  # noqa: E731
    first = trace(model_fn).get_trace(X)["net$state"].value
    assert int(first["state"]["dropout"]["rngs"]["count"]) == 1

    @jax.jit
    def step(p, state, x):
        with trace() as tr:
            y = substitute(model_fn, data={"net$params": p, "net$state": state})(x)
        return y, tr["net$state"].value

    params = pure_params(net)
    y1, second = step(params, first, X)
    y2, _ = step(params, second, X)
    assert int(second["state"]["dropout"]["rngs"]["count"]) == 2
    # A new count gives a new dropout mask; kept units are scaled by 1 / (1 - 0.5).
    assert bool((y1 != y2).any())
    dense = X @ params["linear"]["kernel"] + params["linear"]["bias"]
    kept = y1 != 0
    np.testing.assert_allclose(y1[kept], 2 * dense[kept], rtol=1e-6)

    def loss(p):
        return substitute(model_fn, data={"net$params": p, "net$state": first})(X).sum()

    grads = jax.grad(loss)(params)
    assert jax.tree.map(jnp.shape, grads) == jax.tree.map(jnp.shape, params)


def test_a_non_nnx_module_is_a_site_error():
    from plait.errors import SiteError

    with pytest.raises(SiteError, match=re.escape("network 'net' got a builtins.function")):
        flax_nnx_module("net", lambda x: x)
