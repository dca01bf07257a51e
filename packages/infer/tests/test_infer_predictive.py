"""Predictive: shapes, return sites, guides, batch dims, and its errors."""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import plait
from plait.errors import PlaitError
from plait.infer import Predictive


def model(x: Any, y: Any = None) -> None:
    w = plait.sample("w", dist.Normal(0.0, 1.0))
    sigma = plait.sample("sigma", dist.HalfNormal(1.0))
    mean = plait.deterministic("mean", w * x)
    with plait.plate("data", x.shape[0]):
        plait.sample("y", dist.Normal(mean, sigma), obs=y)


X = jnp.arange(4.0)


def test_prior_predictive_draws_every_site_with_a_leading_sample_dim() -> None:
    draws = Predictive(model, num_samples=7)(jax.random.key(0), X)
    assert set(draws) == {"w", "sigma", "mean", "y"}
    assert draws["w"].shape == (7,) and draws["y"].shape == (7, 4)
    np.testing.assert_allclose(draws["mean"], draws["w"][:, None] * X, rtol=1e-6)
    assert len(np.unique(np.asarray(draws["w"]))) == 7


def test_posterior_predictive_substitutes_samples_and_recomputes_deterministics() -> None:
    samples = {
        "w": jnp.array([1.0, 2.0, 3.0]),
        "sigma": jnp.full(3, 1e-4),
        "mean": jnp.zeros((3, 4)),
    }
    draws = Predictive(model, samples)(jax.random.key(1), X)
    assert set(draws) == {"mean", "y"}
    np.testing.assert_allclose(draws["mean"], jnp.array([1.0, 2.0, 3.0])[:, None] * X, rtol=1e-6)
    np.testing.assert_allclose(draws["y"], draws["mean"], atol=1e-3)


def test_return_sites_selects_sites_and_empty_string_returns_all() -> None:
    samples = {"w": jnp.ones(2), "sigma": jnp.ones(2)}
    only = Predictive(model, samples, return_sites=["w", "y"])(jax.random.key(2), X)
    assert set(only) == {"w", "y"}
    np.testing.assert_array_equal(only["w"], 1.0)
    everything = Predictive(model, samples, return_sites="")(jax.random.key(2), X)
    assert set(everything) == {"w", "sigma", "mean", "y"}


def test_batch_ndims_two_keeps_chain_and_draw_dims() -> None:
    samples = {"w": jnp.zeros((2, 5)), "sigma": jnp.ones((2, 5))}
    draws = Predictive(model, samples, batch_ndims=2)(jax.random.key(3), X)
    assert draws["y"].shape == (2, 5, 4)


def test_guide_draws_latents_then_model_draws_the_rest() -> None:
    def guide(x: Any, y: Any = None) -> None:
        loc = plait.param("loc", 0.0)
        plait.sample("w", dist.Normal(loc, 1e-4))
        plait.sample("sigma", dist.Delta(1e-4))

    draws = Predictive(model, guide=guide, params={"loc": 5.0}, num_samples=3)(jax.random.key(4), X)
    assert set(draws) == {"mean", "y"}
    np.testing.assert_allclose(draws["mean"], 5.0 * jnp.broadcast_to(X, (3, 4)), rtol=1e-3)


def test_observed_sites_keep_their_observations() -> None:
    y = jnp.array([0.0, 1.0, 2.0, 3.0])
    draws = Predictive(model, num_samples=2)(jax.random.key(5), X, y)
    np.testing.assert_array_equal(draws["y"], jnp.broadcast_to(y, (2, 4)))


def test_missing_num_samples_and_unknown_return_site_are_clear_errors() -> None:
    with pytest.raises(PlaitError, match="needs num_samples"):
        Predictive(model)
    with pytest.raises(PlaitError, match=re.escape("return_sites names ['nope']")):
        Predictive(model, num_samples=1, return_sites=["nope"])(jax.random.key(0), X)


def test_infer_discrete_without_plait_enum_is_a_clear_error() -> None:
    # No plugin answers the plait_infer_discrete hook once plait-enum is gone.
    removed = plait.unregister("enum") if plait.plugin_manager().has_plugin("enum") else None
    try:
        with pytest.raises(PlaitError, match=re.escape("pip install plait-enum")):
            Predictive(model, num_samples=1, infer_discrete=True)(jax.random.key(0), X)
    finally:
        if removed is not None:
            plait.register(removed, name="enum")


def test_infer_discrete_draws_enumerated_sites_from_their_posterior() -> None:
    pytest.importorskip("plait.enum")
    y = jnp.array([-3.1, 2.9, 3.2, -2.8])

    def mixture(y: Any) -> None:
        loc = plait.sample("loc", dist.Normal(0.0, 5.0))
        with plait.plate("data", y.shape[0]):
            z = plait.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
            plait.sample("y", dist.Normal(jnp.where(z == 1, loc, -loc), 0.3), obs=y)

    samples = {"loc": jnp.array([3.0, -3.0, 3.0])}
    draws = Predictive(mixture, samples, infer_discrete=True, return_sites=["z"])(
        jax.random.key(0), y
    )
    # Clusters 20 standard deviations apart: the posterior of z is a point mass.
    expected = jnp.array([[0, 1, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0]])
    np.testing.assert_array_equal(draws["z"], expected)


def numpyro_model(x: Any, y: Any = None) -> None:
    import numpyro

    w = numpyro.sample("w", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    mean = numpyro.deterministic("mean", w * x)
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(mean, sigma), obs=y)


def assert_same_draws(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert sorted(ours) == sorted(theirs)
    for name in theirs:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("num_samples", [1, 5])
def test_prior_draws_are_numpyros_mapped_or_vmapped(parallel: bool, num_samples: int) -> None:
    from numpyro.infer import Predictive as NumPyroPredictive

    ours = Predictive(model, num_samples=num_samples, parallel=parallel)(jax.random.key(0), X)
    theirs = NumPyroPredictive(numpyro_model, num_samples=num_samples, parallel=parallel)(
        jax.random.key(0), X
    )
    assert_same_draws(ours, theirs)


def test_batch_ndims_two_without_samples_has_numpyros_shape() -> None:
    from numpyro.infer import Predictive as NumPyroPredictive

    ours = Predictive(model, num_samples=100, batch_ndims=2)(jax.random.key(0), X)
    theirs = NumPyroPredictive(numpyro_model, num_samples=100, batch_ndims=2)(jax.random.key(0), X)
    assert ours["y"].shape == (1, 100, 4)
    assert_same_draws(ours, theirs)


def test_num_samples_that_disagrees_with_the_samples_warns_and_is_ignored() -> None:
    samples = {"w": jnp.zeros(3), "sigma": jnp.ones(3)}
    with pytest.warns(UserWarning, match="different from the provided 7 num_samples"):
        draws = Predictive(model, samples, num_samples=7)(jax.random.key(0), X)
    assert draws["y"].shape == (3, 4)


def test_exclude_deterministic_is_numpyros_deprecated_alias() -> None:
    samples = {"w": jnp.ones(2), "sigma": jnp.full(2, 1e-4), "mean": jnp.zeros((2, 4))}
    with pytest.warns(FutureWarning, match="condition_deterministic"):
        kept = Predictive(model, samples, exclude_deterministic=False)(jax.random.key(0), X)
    np.testing.assert_allclose(kept["mean"], 0.0)
    conditioned = Predictive(model, samples, condition_deterministic=True)(jax.random.key(0), X)
    np.testing.assert_allclose(conditioned["y"], 0.0, atol=1e-3)
    recomputed = Predictive(model, samples)(jax.random.key(0), X)
    np.testing.assert_allclose(recomputed["mean"], jnp.broadcast_to(X, (2, 4)), rtol=1e-6)


def guide(x: Any, y: Any = None) -> None:
    loc = plait.param("loc", 0.0)
    plait.sample("w", dist.Normal(loc, 0.1))
    plait.sample("sigma", dist.LogNormal(0.0, 0.1))


def numpyro_guide(x: Any, y: Any = None) -> None:
    import numpyro

    loc = numpyro.param("loc", 0.0)
    numpyro.sample("w", dist.Normal(loc, 0.1))
    numpyro.sample("sigma", dist.LogNormal(0.0, 0.1))


@pytest.mark.parametrize("params", [{"loc": jnp.array(2.0)}, {"loc": jnp.array([1.0, 2.0])}])
def test_guide_draws_and_batched_guide_params_are_numpyros(params: dict[str, Any]) -> None:
    from numpyro.infer import Predictive as NumPyroPredictive

    batch_ndims = jnp.ndim(params["loc"])
    ours = Predictive(model, guide=guide, params=params, num_samples=3, batch_ndims=batch_ndims)(
        jax.random.key(2), X
    )
    theirs = NumPyroPredictive(
        numpyro_model, guide=numpyro_guide, params=params, num_samples=3, batch_ndims=batch_ndims
    )(jax.random.key(2), X)
    assert_same_draws(ours, theirs)
    assert ours["mean"].shape == ((3, 2, 4) if batch_ndims else (3, 4))


def test_guide_draws_keep_the_guides_subsample() -> None:
    def local(y: Any) -> None:
        with plait.plate("data", 6, subsample_size=2):
            z = plait.sample("z", dist.Normal(0.0, 1.0))
            plait.deterministic("ids", plait.subsample(jnp.arange(6.0), event_dim=0))
            plait.deterministic("z_seen", z)
            plait.sample("y", dist.Normal(z, 1.0), obs=plait.subsample(y, event_dim=0))

    def local_guide(y: Any) -> None:
        with plait.plate("data", 6, subsample_size=2) as idx:
            plait.sample("z", dist.Normal(100.0 * idx, 1e-3))

    draws = Predictive(local, guide=local_guide, num_samples=4)(jax.random.key(0), jnp.zeros(6))
    # The model's plate takes the guide's indices: the z it sees is about 100 * index.
    assert draws["ids"].shape == (4, 2)
    np.testing.assert_allclose(draws["z_seen"], 100.0 * draws["ids"], atol=0.01)


def test_a_model_reading_concrete_data_values_draws() -> None:
    def counts(y: Any) -> None:
        k = int(np.max(y)) + 1  # NumPyro's annotation example does this
        probs = plait.sample("probs", dist.Dirichlet(jnp.ones(k)))
        with plait.plate("data", y.shape[0]):
            plait.sample("y", dist.Categorical(probs), obs=y)

    labels = np.array([0, 2, 1])  # NumPy data, as in NumPyro's example
    draws = Predictive(counts, num_samples=3)(jax.random.key(0), labels)
    assert draws["probs"].shape == (3, 3)
    # With a JAX array, NumPyro draws only without compiling (vmapped): plait too.
    draws = Predictive(counts, num_samples=3, parallel=True)(jax.random.key(0), jnp.asarray(labels))
    assert draws["probs"].shape == (3, 3)


def test_second_call_with_new_values_compiles_nothing(count_compiles: Any) -> None:
    predictive = Predictive(model, num_samples=5)
    predictive(jax.random.key(0), X)
    key, new_x = jax.random.key(1), X + 1.0
    with count_compiles() as compiles:
        predictive(key, new_x)
    assert len(compiles) == 0


def test_log_likelihood_and_compute_log_probs_are_numpyros() -> None:
    from numpyro.infer import log_likelihood as numpyro_log_likelihood
    from numpyro.infer.util import compute_log_probs as numpyro_compute_log_probs

    from plait.infer import compute_log_probs, log_likelihood

    y = jnp.array([0.1, 0.5, -0.3, 1.0])
    samples = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "sigma": jnp.ones((2, 3))}
    for parallel in (False, True):
        ours = log_likelihood(model, samples, X, y, parallel=parallel, batch_ndims=2)
        theirs = numpyro_log_likelihood(
            numpyro_model, samples, X, y, parallel=parallel, batch_ndims=2
        )
        assert_same_draws(ours, theirs)
    values = {"w": 0.3, "sigma": 1.2}
    ours_lp, _ = compute_log_probs(model, (X, y), {}, values, sum_log_prob=False)
    theirs_lp, _ = numpyro_compute_log_probs(numpyro_model, (X, y), {}, values, sum_log_prob=False)
    assert_same_draws(ours_lp, theirs_lp)
