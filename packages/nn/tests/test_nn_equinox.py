"""The Equinox adapter, against a hand-written forward pass and NumPyro's ``eqx_module``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

eqx = pytest.importorskip("equinox")

from numpyro import handlers as nh  # noqa: E402
from numpyro.contrib.module import eqx_module as np_eqx_module  # noqa: E402
from numpyro.contrib.module import random_eqx_module as np_random_eqx_module  # noqa: E402

import plait  # noqa: E402
from plait.handlers import seed, substitute, trace  # noqa: E402
from plait.nn import ModuleState, ParamShape, eqx_module, random_eqx_module  # noqa: E402

X = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)), dtype=jnp.float32)
MLP = eqx.nn.MLP(3, 1, 4, 1, key=jax.random.key(0))
LEAVES = ["layers[0].weight", "layers[0].bias", "layers[1].weight", "layers[1].bias"]


def forward(mlp, x):
    """The MLP by hand (relu hidden layer), on a batch."""
    h = jnp.maximum(x @ mlp.layers[0].weight.T + mlp.layers[0].bias, 0.0)
    return h @ mlp.layers[1].weight.T + mlp.layers[1].bias


def arrays(module):
    return eqx.filter(module, eqx.is_inexact_array)


def model(x):
    net = eqx_module("net", MLP)
    return jax.vmap(net)(x), plait.sample("z", dist.Normal(0.0, 1.0))


def test_params_round_trip_and_output_is_the_forward_pass():
    tr = trace(seed(model, rng_seed=0)).get_trace(X)
    assert [(k, v.type) for k, v in tr.items()] == [("net$params", "param"), ("z", "sample")]
    assert eqx.tree_equal(tr["net$params"].value, arrays(MLP))
    out, _ = seed(model, rng_seed=0)(X)
    np.testing.assert_allclose(out, forward(MLP, X), rtol=1e-6)


def test_substitute_replaces_params_under_jit_and_gradients_flow():
    doubled = jax.tree.map(lambda a: 2 * a, arrays(MLP))

    @jax.jit
    def run(p, x):
        return seed(substitute(model, data={"net$params": p}), rng_seed=0)(x)[0]

    np.testing.assert_allclose(run(doubled, X), forward(eqx.combine(doubled, MLP), X), rtol=1e-6)

    def loss(p):
        return run(p, X).sum()

    def loss_ref(p):
        return forward(eqx.combine(p, MLP), X).sum()

    for u, v in zip(
        jax.tree.leaves(jax.grad(loss)(doubled)),
        jax.tree.leaves(jax.grad(loss_ref)(doubled)),
        strict=True,
    ):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


def test_same_trace_and_random_stream_as_numpyro():
    def theirs_model(x):
        net = np_eqx_module("net", MLP)
        return jax.vmap(net)(x), numpyro.sample("z", dist.Normal(0.0, 1.0))

    ours = trace(seed(model, rng_seed=5)).get_trace(X)
    theirs = nh.trace(nh.seed(theirs_model, rng_seed=5)).get_trace(X)
    assert list(ours) == list(theirs)
    assert eqx.tree_equal(ours["net$params"].value, theirs["net$params"]["value"])
    np.testing.assert_array_equal(ours["z"].value, theirs["z"]["value"])


def test_random_module_matches_numpyro_names_and_draws():
    prior = dist.Normal(0.0, 0.5)

    def ours_model(x):
        return jax.vmap(random_eqx_module("net", MLP, prior))(x)

    def theirs_model(x):
        return jax.vmap(np_random_eqx_module("net", MLP, prior))(x)

    ours = trace(seed(ours_model, rng_seed=3)).get_trace(X)
    theirs = nh.trace(nh.seed(theirs_model, rng_seed=3)).get_trace(X)
    assert list(ours) == list(theirs) == ["net$params"] + [f"net/{p}" for p in LEAVES]
    for p in LEAVES:
        np.testing.assert_array_equal(ours[f"net/{p}"].value, theirs[f"net/{p}"]["value"])
    assert ours["net$params"].value.layers[0].weight == ParamShape((4, 3))
    drawn = eqx.tree_at(
        lambda m: [m.layers[0].weight, m.layers[0].bias, m.layers[1].weight, m.layers[1].bias],
        MLP,
        [ours[f"net/{p}"].value for p in LEAVES],
    )
    out = seed(ours_model, rng_seed=3)(X)
    np.testing.assert_allclose(out, forward(drawn, X), rtol=1e-6)


def test_random_module_dict_prior_keeps_unnamed_leaves_learnable():
    def bnn(x):
        net = random_eqx_module("net", MLP, {"layers[1].weight": dist.Normal(0.0, 1.0)})
        return jax.vmap(net)(x)

    tr = trace(seed(bnn, rng_seed=0)).get_trace(X)
    assert [k for k, v in tr.items() if v.type == "sample"] == ["net/layers[1].weight"]
    params = tr["net$params"].value
    assert params.layers[1].weight == ParamShape((1, 4))
    np.testing.assert_array_equal(params.layers[0].weight, MLP.layers[0].weight)


class BatchNormNet(eqx.Module):
    l1: eqx.nn.Linear
    bn: eqx.nn.BatchNorm
    l2: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.l1 = eqx.nn.Linear(3, 4, key=k1)
        self.bn = eqx.nn.BatchNorm(4, axis_name="batch", mode="batch")
        self.l2 = eqx.nn.Linear(4, 1, key=k2)

    def __call__(self, x, state):
        h, state = self.bn(self.l1(x), state)
        return self.l2(jax.nn.relu(h)), state


def batched(net):
    return jax.vmap(net, in_axes=(0, None), out_axes=(0, None), axis_name="batch")


BN_NET, BN_STATE = eqx.nn.make_with_state(BatchNormNet)(jax.random.key(1))


def stateful(x):
    net, state = eqx_module("net", BN_NET, BN_STATE)
    y, state.value = batched(net)(x, state.value)
    return y


def test_state_lives_in_a_mutable_site_and_is_updated():
    tr = trace(seed(stateful, rng_seed=0)).get_trace(X)
    assert [(k, v.type) for k, v in tr.items()] == [
        ("net$params", "param"),
        ("net$state", "mutable"),
    ]
    y_ref, state_ref = batched(BN_NET)(X, BN_STATE)
    assert eqx.tree_equal(tr["net$state"].value["state"], state_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(seed(stateful, rng_seed=0)(X), y_ref, rtol=1e-6)


def test_substituted_state_is_used():
    _, state1 = batched(BN_NET)(X, BN_STATE)
    _, state2 = batched(BN_NET)(X + 1.0, state1)
    with trace() as tr:
        seed(substitute(stateful, data={"net$state": {"state": state1}}), rng_seed=0)(X + 1.0)
    assert eqx.tree_equal(tr["net$state"].value["state"], state2, rtol=1e-6, atol=1e-7)


def test_module_state_value_is_the_typed_handle():
    with seed(rng_seed=0):
        net, state = eqx_module("net", BN_NET, BN_STATE)
    assert isinstance(state, ModuleState)
    assert state.value is BN_STATE
    assert isinstance(net, BatchNormNet)
