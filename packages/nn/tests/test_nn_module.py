"""``plait.nn.module``: stax networks as one param site, against stax itself and NumPyro."""

from __future__ import annotations

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax.example_libraries import stax
from numpyro import handlers as nh
from numpyro.distributions import constraints

import plait
from plait.errors import SiteError
from plait.handlers import scope, seed, substitute, trace
from plait.nn import module

MLP = stax.serial(stax.Dense(8), stax.Relu, stax.Dense(1))
X = jnp.linspace(-1.0, 1.0, 15).reshape(5, 3)


def model(x):
    net = module("net", MLP, input_shape=(-1, 3))
    return net(x)


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_params_equal_stax_init_with_seeds_key():
    tr = trace(seed(model, rng_seed=0)).get_trace(X)
    assert list(tr) == ["net$params"]
    assert tr["net$params"].type == "param"
    # seed hands the first prng_key the second half of split(key(0)).
    _, key = jax.random.split(jax.random.key(0))
    _, expected = MLP[0](key, (-1, 3))
    assert_trees_equal(tr["net$params"].value, expected)


def test_output_equals_apply_fn_with_the_same_params():
    tr = trace(seed(model, rng_seed=0)).get_trace(X)
    out = seed(model, rng_seed=0)(X)
    np.testing.assert_array_equal(out, MLP[1](tr["net$params"].value, X))


def test_same_trace_params_and_random_stream_as_numpyro():
    def plait_model(x):
        net = module("net", MLP, input_shape=(-1, 3))
        return net(x), plait.sample("z", dist.Normal(0.0, 1.0))

    def numpyro_model(x):
        net = numpyro.module("net", MLP, input_shape=(-1, 3))
        return net(x), numpyro.sample("z", dist.Normal(0.0, 1.0))

    ours = trace(seed(plait_model, rng_seed=3)).get_trace(X)
    theirs = nh.trace(nh.seed(numpyro_model, rng_seed=3)).get_trace(X)
    assert list(ours) == list(theirs)
    assert [m.type for m in ours.values()] == [m["type"] for m in theirs.values()]
    assert_trees_equal(ours["net$params"].value, theirs["net$params"]["value"])
    np.testing.assert_array_equal(ours["z"].value, theirs["z"]["value"])
    y_ours, _ = seed(plait_model, rng_seed=3)(X)
    y_theirs, _ = nh.seed(numpyro_model, rng_seed=3)(X)
    np.testing.assert_array_equal(y_ours, y_theirs)


def test_substitute_replaces_params_without_seed_or_input_shape():
    _, other = MLP[0](jax.random.key(42), (-1, 3))

    def unshaped(x):
        return module("net", MLP)(x)

    with trace() as tr:
        out = substitute(unshaped, data={"net$params": other})(X)
    np.testing.assert_array_equal(out, MLP[1](other, X))
    assert_trees_equal(tr["net$params"].value, other)


def test_grad_through_substituted_params_equals_grad_of_apply_fn():
    _, params = MLP[0](jax.random.key(1), (-1, 3))

    def loss_ours(p):
        return substitute(model, data={"net$params": p})(X).sum()

    def loss_ref(p):
        return MLP[1](p, X).sum()

    g_ours = jax.grad(loss_ours)(params)
    g_ref = jax.grad(loss_ref)(params)
    for u, v in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=0)


def test_jit_initialisation_and_substitution_match_eager():
    eager = seed(model, rng_seed=0)(X)
    np.testing.assert_array_equal(jax.jit(seed(model, rng_seed=0))(X), eager)
    _, params = MLP[0](jax.random.key(5), (-1, 3))

    @jax.jit
    def fitted(p, x):
        return substitute(model, data={"net$params": p})(x)

    np.testing.assert_allclose(fitted(params, X), MLP[1](params, X), rtol=1e-6)


def test_constraint_is_recorded_on_the_param_site():
    def positive(x):
        return module("net", MLP, input_shape=(-1, 3), constraint=constraints.positive)(x)

    tr = trace(seed(positive, rng_seed=0)).get_trace(X)
    assert tr["net$params"].kwargs["constraint"] is constraints.positive
    # An optimiser works on the unconstrained leaves and maps them through the support.
    _, raw = MLP[0](jax.random.key(2), (-1, 3))
    to_positive = dist.biject_to(constraints.positive)
    params = jax.tree.map(to_positive, raw)
    out = substitute(positive, data={"net$params": params})(X)
    np.testing.assert_allclose(out, MLP[1](params, X), rtol=1e-6)
    assert all(bool((leaf > 0).all()) for leaf in jax.tree.leaves(params))


def test_scope_prefixes_the_param_site():
    tr = trace(seed(scope(model, prefix="enc"), rng_seed=0)).get_trace(X)
    assert list(tr) == ["enc/net$params"]


def test_missing_input_shape_names_the_module_and_the_fix():
    def unshaped(x):
        return module("encoder", MLP)(x)

    with pytest.raises(SiteError, match=re.escape("network 'encoder'")) as info:
        seed(unshaped, rng_seed=0)(X)
    assert "input_shape" in str(info.value)
    assert "substitute 'encoder$params'" in str(info.value)
    assert info.value.site == "encoder$params"


@pytest.mark.parametrize("handler", ["none", "trace"])
def test_missing_seed_says_to_seed_the_model(handler):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SiteError, match=re.escape("plait.handlers.seed")) as info:
            if handler == "none":
                model(X)
            else:
                trace(model).get_trace(X)
    assert "network 'net'" in str(info.value)
