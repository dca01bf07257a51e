"""``plait.nn.random_module``: Bayesian stax networks, against hand-computed densities."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from jax.example_libraries import stax

from plait import plate, sample
from plait.errors import SiteError
from plait.handlers import seed, substitute, trace
from plait.nn import ParamShape, random_module

NET = stax.serial(stax.Dense(4), stax.Tanh, stax.Dense(1))
LEAVES = {"0.0": (2, 4), "0.1": (4,), "2.0": (4, 1), "2.1": (1,)}
X = jnp.asarray(np.random.default_rng(0).normal(size=(7, 2)), dtype=jnp.float32)
Y = jnp.asarray(np.random.default_rng(1).normal(size=7), dtype=jnp.float32)


def bias_laplace_kernel_normal(path, shape):
    return dist.Laplace(0.0, 0.5) if path.endswith(".1") else dist.Normal(0.0, 1.5)


def bnn(x, y=None, prior=bias_laplace_kernel_normal):
    net = random_module("bnn", NET, prior, input_shape=(-1, 2))
    mean = net(x)[..., 0]
    with plate("data", x.shape[0]):
        return sample("y", dist.Normal(mean, 0.5), obs=y)


def log_joint(model, params, *args):
    """substitute + trace + sum of scale * log_prob (what plait.infer.log_density does)."""
    tr = trace(seed(substitute(model, data=params), rng_seed=0)).get_trace(*args)
    total = 0.0
    for site in tr.values():
        if site.type == "sample":
            lp = site.fn.log_prob(site.value)
            total = total + (lp if site.scale is None else site.scale * lp).sum()
    return total


def normal_lpdf(v, loc, scale):
    return -0.5 * ((v - loc) / scale) ** 2 - math.log(scale) - 0.5 * math.log(2 * math.pi)


def laplace_lpdf(v, loc, scale):
    return -np.abs(v - loc) / scale - math.log(2 * scale)


def test_every_leaf_is_a_sample_site_with_all_dims_as_event_dims():
    tr = trace(seed(bnn, rng_seed=0)).get_trace(X)
    drawn = {k: v for k, v in tr.items() if v.type == "sample" and k != "y"}
    assert list(drawn) == [f"bnn/{p}" for p in LEAVES]
    for path, shape in LEAVES.items():
        site = drawn[f"bnn/{path}"]
        assert site.value.shape == shape
        assert tuple(site.fn.batch_shape) == ()
        assert tuple(site.fn.event_shape) == shape


def test_leaf_shapes_equal_the_networks_own_init():
    tr = trace(seed(bnn, rng_seed=0)).get_trace(X)
    _, params = NET[0](jax.random.key(0), (-1, 2))
    drawn = [tr[f"bnn/{p}"].value for p in LEAVES]
    assert [d.shape for d in drawn] == [leaf.shape for leaf in jax.tree.leaves(params)]


def test_param_site_keeps_only_shapes_of_drawn_leaves():
    tr = trace(seed(bnn, rng_seed=0)).get_trace(X)
    placeholders = tr["bnn$params"].value
    assert tr["bnn$params"].type == "param"
    assert jax.tree.leaves(placeholders) == []
    assert placeholders[0] == (ParamShape((2, 4)), ParamShape((4,)))
    assert placeholders[1] == ()


def test_log_density_equals_leaf_priors_plus_likelihood_by_hand():
    tr = trace(seed(bnn, rng_seed=4)).get_trace(X, Y)
    values = {k: v.value for k, v in tr.items() if k.startswith("bnn/")}
    ours = log_joint(bnn, values, X, Y)

    w1, b1, w2, b2 = (np.asarray(values[f"bnn/{p}"], np.float64) for p in LEAVES)
    prior = (
        normal_lpdf(w1, 0.0, 1.5).sum()
        + laplace_lpdf(b1, 0.0, 0.5).sum()
        + normal_lpdf(w2, 0.0, 1.5).sum()
        + laplace_lpdf(b2, 0.0, 0.5).sum()
    )
    x, y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    mean = (np.tanh(x @ w1 + b1) @ w2 + b2)[:, 0]
    likelihood = normal_lpdf(y, mean, 0.5).sum()
    np.testing.assert_allclose(float(ours), prior + likelihood, rtol=1e-5)
    jitted = jax.jit(lambda v: log_joint(bnn, v, X, Y))(values)
    np.testing.assert_allclose(float(jitted), prior + likelihood, rtol=1e-5)


def test_output_equals_apply_fn_with_the_drawn_leaves():
    tr = trace(seed(bnn, rng_seed=2)).get_trace(X)
    w1, b1, w2, b2 = (tr[f"bnn/{p}"].value for p in LEAVES)
    expected = NET[1]([(w1, b1), (), (w2, b2)], X)[..., 0]
    np.testing.assert_allclose(tr["y"].fn.loc, expected, rtol=1e-6)


def test_dict_prior_draws_the_named_leaves_and_keeps_the_rest_as_params():
    prior = {"0.0": dist.Normal(0.0, 1.0), "2.0": dist.Normal(0.0, 1.0)}
    tr = trace(seed(bnn, rng_seed=0)).get_trace(X, prior=prior)
    assert [k for k, v in tr.items() if v.type == "sample"] == ["bnn/0.0", "bnn/2.0", "y"]
    (w1, b1), _, (w2, b2) = tr["bnn$params"].value
    assert w1 == ParamShape((2, 4)) and w2 == ParamShape((4, 1))
    assert b1.shape == (4,) and b2.shape == (1,)
    expected = NET[1]([(tr["bnn/0.0"].value, b1), (), (tr["bnn/2.0"].value, b2)], X)[..., 0]
    np.testing.assert_allclose(tr["y"].fn.loc, expected, rtol=1e-6)


def test_callable_prior_gets_each_leaf_path_and_shape():
    calls = []

    def prior(path, shape):
        calls.append((path, shape))
        return dist.Normal(0.0, 1.0)

    seed(bnn, rng_seed=0)(X, prior=prior)
    assert calls == list(LEAVES.items())


def test_prior_with_an_event_shape_keeps_its_event_dims():
    def prior(path, shape):
        return dist.Normal(jnp.arange(shape[-1], dtype=jnp.float32), 2.0).to_event(1)

    tr = trace(seed(bnn, rng_seed=0)).get_trace(X, prior=prior)
    site = tr["bnn/0.0"]
    assert tuple(site.fn.event_shape) == (2, 4)
    w = np.asarray(site.value, np.float64)
    expected = normal_lpdf(w, np.arange(4.0), 2.0).sum()
    np.testing.assert_allclose(float(site.fn.log_prob(site.value)), expected, rtol=1e-6)


def test_substituted_shapes_need_no_seed_or_input_shape():
    tr = trace(seed(bnn, rng_seed=0)).get_trace(X)
    data = {k: v.value for k, v in tr.items() if k != "y"}

    def unshaped(x):
        return random_module("bnn", NET, dist.Normal(0.0, 1.0))(x)

    out = substitute(unshaped, data=data)(X)
    np.testing.assert_allclose(out[..., 0], tr["y"].fn.loc, rtol=1e-6)


def test_unknown_dict_prior_key_lists_the_parameters():
    with pytest.raises(SiteError, match=re.escape("['1.0']")) as info:
        seed(bnn, rng_seed=0)(X, prior={"1.0": dist.Normal(0.0, 1.0)})
    assert "'0.0', '0.1', '2.0', '2.1'" in str(info.value)


def test_leaf_known_only_by_shape_needs_a_prior():
    tr = trace(seed(bnn, rng_seed=0)).get_trace(X)
    with pytest.raises(SiteError, match=re.escape("site 'bnn/0.1'")):
        substitute(bnn, data={"bnn$params": tr["bnn$params"].value})(
            X, prior={"0.0": dist.Normal(0.0, 1.0)}
        )


def test_prior_event_shape_that_does_not_fit_is_an_error():
    def prior(path, shape):
        return dist.Normal(jnp.zeros(3), 1.0).to_event(1)

    with pytest.raises(SiteError, match=re.escape("site 'bnn/0.0'")):
        seed(bnn, rng_seed=0)(X, prior=prior)


def test_custom_scope_divider():
    def model(x):
        net = random_module("bnn", NET, dist.Normal(0.0, 1.0), (-1, 2), scope_divider=".")
        return net(x)

    tr = trace(seed(model, rng_seed=0)).get_trace(X)
    assert [k for k in tr if k != "bnn$params"] == [f"bnn.{p}" for p in LEAVES]
