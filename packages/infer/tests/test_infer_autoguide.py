"""Autoguides against NumPyro's (same model, seed and optimiser steps: the same params and
draws) and against closed forms."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import numpyro.infer.autoguide as numpyro_autoguide
import optax
import pytest
from jax import random
from numpyro.infer import SVI as NUMPYRO_SVI
from numpyro.infer import Trace_ELBO as NUMPYRO_TRACE_ELBO

import plait
import plait.infer.autoguide as autoguide
from plait.handlers import block, seed, substitute, trace
from plait.infer import SVI, Trace_ELBO, init_to_value

Y = jnp.array([1.2, 0.4, 2.1, 1.7, 0.9])

CONTINUOUS = [
    "AutoDiagonalNormal",
    "AutoMultivariateNormal",
    "AutoLowRankMultivariateNormal",
    "AutoLaplaceApproximation",
    "AutoIAFNormal",
    "AutoBNAFNormal",
    "AutoDAIS",
]
GAUSSIAN = ["AutoDiagonalNormal", "AutoMultivariateNormal", "AutoLowRankMultivariateNormal"]


def regression(lib: Any) -> Callable[..., None]:
    """A model with a constrained latent, an event-shaped latent and a deterministic site."""

    def model(y: Any) -> None:
        mu = lib.sample("mu", dist.Normal(0.0, 2.0).expand([2]).to_event(1))
        sigma = lib.sample("sigma", dist.HalfNormal(1.0))
        shift = lib.deterministic("shift", mu.sum())
        with lib.plate("data", y.shape[0]):
            lib.sample("y", dist.Normal(shift, sigma), obs=y)

    return model


def batched(lib: Any) -> Callable[..., None]:
    def model() -> None:
        lib.sample("x", dist.Normal(jnp.arange(3.0), 1.0).expand([4, 3]).to_event(1))

    return model


def fit_both(
    name: str, make: Callable[[Any], Callable[..., None]], args: tuple[Any, ...], steps: int = 10
) -> tuple[Any, Any, Any, Any]:
    ours_model, theirs_model = make(plait), make(numpyro)
    options = {"hidden_factors": [2]} if name == "AutoBNAFNormal" else {}
    ours_guide = getattr(autoguide, name)(ours_model, **options)
    theirs_guide = getattr(numpyro_autoguide, name)(theirs_model, **options)
    ours = SVI(ours_model, ours_guide, optax.adam(0.01), Trace_ELBO()).run(
        random.key(0), steps, *args, progress_bar=False
    )
    theirs = NUMPYRO_SVI(theirs_model, theirs_guide, optax.adam(0.01), NUMPYRO_TRACE_ELBO()).run(
        random.key(0), steps, *args, progress_bar=False
    )
    return ours_guide, ours, theirs_guide, theirs


def assert_same_dicts(ours: dict[str, Any], theirs: dict[str, Any], atol: float = 1e-6) -> None:
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        for a, b in zip(jax.tree.leaves(ours[key]), jax.tree.leaves(theirs[key]), strict=True):
            np.testing.assert_allclose(a, b, atol=atol, err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["AutoNormal", "AutoDelta", *CONTINUOUS])
def test_autoguide_fits_the_same_params_and_draws_as_numpyro(name: str) -> None:
    ours_guide, ours, theirs_guide, theirs = fit_both(name, regression, (Y,))
    assert_same_dicts(ours.params, theirs.params, atol=1e-5)
    np.testing.assert_allclose(ours.losses, theirs.losses, rtol=1e-5)
    drawn = ours_guide.sample_posterior(random.key(1), ours.params, Y, sample_shape=(3,))
    expected = theirs_guide.sample_posterior(random.key(1), theirs.params, Y, sample_shape=(3,))
    assert_same_dicts(drawn, expected, atol=1e-5)
    assert drawn["shift"].shape == (3,)  # the model's deterministic site


@pytest.mark.parametrize("name", ["AutoNormal", "AutoDelta", *GAUSSIAN, "AutoLaplaceApproximation"])
def test_median_and_quantiles_match_numpyro(name: str) -> None:
    ours_model, theirs_model = regression(plait), regression(numpyro)
    ours_guide = getattr(autoguide, name)(ours_model)
    theirs_guide = getattr(numpyro_autoguide, name)(theirs_model)
    ours_svi = SVI(ours_model, ours_guide, optax.adam(0.01), Trace_ELBO())
    theirs_svi = NUMPYRO_SVI(theirs_model, theirs_guide, optax.adam(0.01), NUMPYRO_TRACE_ELBO())
    ours = ours_svi.get_params(ours_svi.init(random.key(0), Y))
    theirs = theirs_svi.get_params(theirs_svi.init(random.key(0), Y))
    if name != "AutoNormal":
        # Nudge the scales off their initial values so the quantiles differ.
        for params in (ours, theirs):
            for key in params:
                if key.endswith("scale"):
                    params[key] = params[key] * (
                        1.0 + jnp.arange(params[key].size).reshape(jnp.shape(params[key])) / 10
                    )
    assert_same_dicts(ours_guide.median(ours), theirs_guide.median(theirs))
    if name != "AutoDelta":
        assert_same_dicts(
            ours_guide.quantiles(ours, [0.1, 0.9]),
            theirs_guide.quantiles(theirs, [0.1, 0.9]),
            atol=1e-5,
        )


@pytest.mark.slow
def test_full_rank_posterior_log_prob_of_its_draw_is_numpyros_with_its_gradient() -> None:
    from plait.infer.autoguide._gaussian import _MultivariateNormal

    loc = jnp.array([0.5, -1.0, 2.0])
    tril = jnp.array([[1.2, 0.0, 0.0], [0.3, 0.7, 0.0], [-0.4, 0.2, 1.5]])

    def log_q(cls: Any, loc: Any, tril: Any, sample_shape: tuple[int, ...]) -> Any:
        # The guide's draw, then the log density of that draw (as Trace_ELBO takes it);
        # the factor is lower triangular, as the guide's constraint makes it.
        d = cls(loc, scale_tril=jnp.tril(tril)).expand_by(sample_shape)
        value, intermediates = d.sample_with_intermediates(random.key(0))
        lp = d.log_prob(value, intermediates) if intermediates else d.log_prob(value)
        return jnp.sum(lp), value

    for sample_shape in [(), (4,)]:
        ours = jax.value_and_grad(log_q, (1, 2), has_aux=True)(
            _MultivariateNormal, loc, tril, sample_shape
        )
        theirs = jax.value_and_grad(log_q, (1, 2), has_aux=True)(
            dist.MultivariateNormal, loc, tril, sample_shape
        )
        (ours_lp, ours_value), ours_grad = ours
        (theirs_lp, theirs_value), theirs_grad = theirs
        np.testing.assert_array_equal(ours_value, theirs_value)
        np.testing.assert_allclose(ours_lp, theirs_lp, rtol=1e-6)
        for a, b in zip(ours_grad, theirs_grad, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "name", ["AutoBatchedMultivariateNormal", "AutoBatchedLowRankMultivariateNormal"]
)
def test_batched_autoguide_fits_the_same_params_as_numpyro(name: str) -> None:
    ours_guide, ours, theirs_guide, theirs = fit_both(name, batched, ())
    assert_same_dicts(ours.params, theirs.params)
    assert ours.params["auto_loc"].shape == (4, 3)
    assert_same_dicts(ours_guide.median(ours.params), theirs_guide.median(theirs.params))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["AutoNormal", *GAUSSIAN])
def test_gaussian_guides_find_the_exact_conjugate_posterior(name: str) -> None:
    prior_sd = 2.0
    y = jnp.array([1.2, 0.4, 2.1, 1.7, 0.9, 1.3, 1.8, 0.6])

    def model(y: Any) -> None:
        mu = plait.sample("mu", dist.Normal(0.0, prior_sd).expand([2]).to_event(1))
        with plait.plate("data", y.shape[0]):
            plait.sample("y", dist.Normal(mu[0] + mu[1], 1.0), obs=y)

    guide = getattr(autoguide, name)(model)
    optimizer = optax.adam(optax.exponential_decay(0.05, 3000, 0.01))
    params = (
        SVI(model, guide, optimizer, Trace_ELBO(num_particles=32))
        .run(random.key(0), 3000, y, progress_bar=False)
        .params
    )
    # mu ~ N(0, 4 I), y_i ~ N(mu_0 + mu_1, 1): a bivariate Normal posterior.
    a = jnp.ones((1, 2))
    precision = jnp.eye(2) / prior_sd**2 + y.shape[0] * a.T @ a
    cov = jnp.linalg.inv(precision)
    mean = cov @ (a.T[:, 0] * y.sum())
    np.testing.assert_allclose(guide.median(params)["mu"], mean, atol=0.03)
    draws = guide.sample_posterior(random.key(1), params, y, sample_shape=(20000,))["mu"]
    if name in ("AutoNormal", "AutoDiagonalNormal"):
        # A mean-field guide matches the posterior's conditional variances.
        np.testing.assert_allclose(jnp.var(draws, 0), 1 / jnp.diag(precision), rtol=0.1)
    else:
        np.testing.assert_allclose(jnp.cov(draws.T), cov, atol=0.08)  # MC error ~0.02


@pytest.mark.slow
def test_laplace_covariance_is_the_inverse_hessian_of_a_gaussian_posterior() -> None:
    def model() -> None:
        plait.sample(
            "x", dist.MultivariateNormal(jnp.zeros(2), jnp.array([[1.0, 0.6], [0.6, 2.0]]))
        )

    guide = autoguide.AutoLaplaceApproximation(model)
    params = (
        SVI(model, guide, optax.adam(0.1), Trace_ELBO())
        .run(random.key(0), 500, progress_bar=False)
        .params
    )
    posterior = guide.get_posterior(params)
    np.testing.assert_allclose(
        posterior.covariance_matrix, jnp.array([[1.0, 0.6], [0.6, 2.0]]), atol=1e-4
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", GAUSSIAN)
def test_get_posterior_and_get_transform_match_numpyro(name: str) -> None:
    if True:
        ours_guide, ours, theirs_guide, theirs = fit_both(name, regression, (Y,), steps=5)
        z = random.normal(random.key(2), (ours_guide.latent_dim,))
        np.testing.assert_allclose(
            ours_guide.get_transform(ours.params)(z),
            theirs_guide.get_transform(theirs.params)(z),
            atol=1e-6,
        )
        np.testing.assert_allclose(
            ours_guide.get_posterior(ours.params).log_prob(z),
            theirs_guide.get_posterior(theirs.params).log_prob(z),
            rtol=1e-6,
        )


def subsampled(lib: Any) -> Callable[..., None]:
    def model(y: Any) -> None:
        mu = lib.sample("mu", dist.Normal(0.0, 2.0))
        lib.deterministic("twice", 2 * mu)
        with lib.plate("data", 4, subsample_size=2):
            z = lib.sample("z", dist.Normal(mu, 1.0))
            lib.deterministic("z2", 2 * z)
            lib.sample("y", dist.Normal(z, 1.0), obs=lib.subsample(y, event_dim=0))

    return model


@pytest.mark.parametrize("name", ["AutoNormal", "AutoDelta"])
@pytest.mark.parametrize("shape", [(), (3,)])
def test_sample_posterior_returns_full_size_deterministic_sites_under_subsampling(
    name: str, shape: tuple[int, ...]
) -> None:
    # NumPyro fails here ("Incompatible shapes for broadcasting"); the draws of a local
    # latent are full-size, so the deterministic sites are computed at full size.
    model = subsampled(plait)
    y = jnp.arange(4.0)
    guide = getattr(autoguide, name)(model)
    svi = SVI(model, guide, optax.adam(0.01), Trace_ELBO())
    params = svi.get_params(svi.init(random.key(0), y))
    drawn = guide.sample_posterior(random.key(1), params, y, sample_shape=shape)
    assert drawn["z"].shape == (*shape, 4) and drawn["z2"].shape == (*shape, 4)
    np.testing.assert_allclose(drawn["z2"], 2 * drawn["z"], rtol=1e-6)
    np.testing.assert_allclose(drawn["twice"], 2 * drawn["mu"], rtol=1e-6)


@pytest.mark.parametrize("size,dim", [(10, -2), (5, -1)])
def test_plates_named_alike_with_another_dim_or_size_are_an_error(size: int, dim: int) -> None:
    def model() -> None:
        with plait.plate("a", 10, dim=-1):
            plait.sample("x", dist.Normal(0.0, 1.0))
        with plait.plate("a", size, dim=dim):
            plait.sample("y", dist.Normal(0.0, 1.0))

    guide = autoguide.AutoDelta(model)
    with pytest.raises(AssertionError, match="has inconsistent dim or size") as info:
        seed(guide, 0)()
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", ["AutoNormal", "AutoDelta", "AutoDiagonalNormal"])
def test_an_unmarked_discrete_latent_is_a_helpful_error(name: str) -> None:
    def model() -> None:
        p = plait.sample("p", dist.Beta(2.0, 2.0))
        plait.sample("x", dist.Bernoulli(p))

    with pytest.raises(ValueError, match="handle discrete"):
        seed(getattr(autoguide, name)(model), 0)()


def test_a_spherical_latent_points_to_projected_normal_reparam() -> None:
    def model() -> None:
        plait.sample("y", dist.ProjectedNormal(jnp.array([1.0, 0.0])))

    with pytest.raises(ValueError, match="ProjectedNormalReparam"):
        seed(autoguide.AutoNormal(model), 0)()


def test_continuous_guides_refuse_local_latents_and_dais_refuses_subsampling() -> None:
    def local() -> None:
        with plait.plate("N", 10, subsample_size=4):
            plait.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="local latent variables"):
        seed(autoguide.AutoDiagonalNormal(local), 0)()

    def data_subsampled() -> None:
        f = plait.sample("beta", dist.Beta(1.0, 1.0))
        with plait.plate("plate", 20, 10):
            plait.sample("obs", dist.Bernoulli(f), obs=jnp.ones(10))

    with pytest.raises(NotImplementedError, match="data subsampling"):
        seed(autoguide.AutoDAIS(data_subsampled), 0)()


def test_init_loc_fn_prefix_and_init_scale_set_the_starting_params() -> None:
    def model() -> None:
        plait.sample("s", dist.LogNormal(0.0, 1.0))

    guide = autoguide.AutoNormal(
        model, prefix="q", init_loc_fn=init_to_value(values={"s": 2.0}), init_scale=0.3
    )
    params = {n: s.value for n, s in trace(seed(guide, 0)).get_trace().items() if s.type == "param"}
    np.testing.assert_allclose(params["s_q_loc"], jnp.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(params["s_q_scale"], 0.3)
    with pytest.raises(ValueError, match=re.escape("init_scale > 0")):
        autoguide.AutoDiagonalNormal(model, init_scale=0.0)


def test_create_plates_gives_the_guide_the_models_subsample() -> None:
    def model(idx: Any) -> None:
        with plait.plate("data", 10, subsample_size=3):
            plait.sample("z", dist.Normal(0.0, 1.0))

    def create_plates(idx: Any) -> Any:
        return plait.plate("data", 10, subsample_size=3)

    guide = autoguide.AutoNormal(model, create_plates=create_plates)
    indices = jnp.array([7, 1, 4])
    tr = trace(seed(substitute(guide, data={"data": indices}), 0)).get_trace(None)
    assert tr["z_auto_loc"].value.shape == (10,)  # the full param; the site sees 3 of them
    assert tr["z"].value.shape == (3,)
    assert jnp.array_equal(tr["data"].value, indices)


def pieces(lib: Any) -> Callable[..., None]:
    def model(y: Any) -> None:
        a = lib.sample("a", dist.Normal(0.0, 1.0))
        b = lib.sample("b", dist.HalfNormal(1.0))
        c = lib.sample("c", dist.Normal(0.0, 1.0))
        with lib.plate("data", y.shape[0]):
            lib.sample("y", dist.Normal(a + c, b), obs=y)

    return model


def custom_part(lib: Any) -> Callable[..., dict[str, Any]]:
    def guide(y: Any) -> dict[str, Any]:
        loc = lib.param("c_loc", 0.0)
        return {"c": lib.sample("c", dist.Normal(loc, 0.5))}

    return guide


@pytest.mark.slow
def test_guide_list_of_autoguides_and_a_custom_guide_fits_as_numpyro() -> None:
    results = []
    for lib, ag, svi_cls, elbo in (
        (plait, autoguide, SVI, Trace_ELBO),
        (numpyro, numpyro_autoguide, NUMPYRO_SVI, NUMPYRO_TRACE_ELBO),
    ):
        model = pieces(lib)
        guide = ag.AutoGuideList(model)
        guide.append(ag.AutoNormal(lib.handlers.block(model, expose=["a"])))
        guide.append(ag.AutoDelta(lib.handlers.block(model, expose=["b"])))
        guide.append(custom_part(lib))
        result = svi_cls(model, guide, optax.adam(0.01), elbo()).run(
            random.key(0), 30, Y, progress_bar=False
        )
        results.append((guide, result))
    (ours_guide, ours), (theirs_guide, theirs) = results
    assert_same_dicts(ours.params, theirs.params)
    assert len(ours_guide) == 3
    drawn = ours_guide.sample_posterior(random.key(1), ours.params, Y, sample_shape=(2,))
    assert drawn["a"].shape == drawn["b"].shape == drawn["c"].shape == (2,)
    # NumPyro's AutoGuideList draws each autoguide part with the same key (and cannot
    # draw a hand-written part).
    for i, key in enumerate(("a", "b")):
        part = theirs_guide[i].sample_posterior(random.key(1), theirs.params, Y, sample_shape=(2,))
        np.testing.assert_allclose(drawn[key], part[key], rtol=1e-6)


def test_guide_list_refuses_dais_and_exposed_deterministic_sites() -> None:
    def model() -> None:
        x = plait.sample("x", dist.Normal(0.0, 1.0))
        plait.deterministic("d", 2 * x)

    guide = autoguide.AutoGuideList(model)
    with pytest.raises(ValueError, match="not supported"):
        guide.append(autoguide.AutoDAIS(model))
    guide.append(autoguide.AutoNormal(model))
    with pytest.raises(ValueError, match="should not be exposed"):
        seed(guide, 0)()


def test_a_blocked_model_gives_a_guide_for_the_exposed_sites_only() -> None:
    model = pieces(plait)
    guide = autoguide.AutoNormal(block(model, hide=["a", "b"]))
    tr = trace(seed(guide, 0)).get_trace(Y)
    assert [n for n, s in tr.items() if s.type == "sample"] == ["c"]


LIBS = (
    (plait, autoguide, SVI, Trace_ELBO),
    (numpyro, numpyro_autoguide, NUMPYRO_SVI, NUMPYRO_TRACE_ELBO),
)


@pytest.mark.slow
def test_semi_dais_fits_as_numpyro() -> None:
    results = []
    for lib, ag, svi_cls, elbo in LIBS:

        def global_model(lib: Any = lib) -> Any:
            return lib.sample("theta", dist.Normal(0.0, 1.0))

        def local_model(theta: Any, lib: Any = lib) -> None:
            with lib.plate("data", 8, subsample_size=2):
                tau = lib.sample("tau", dist.Gamma(5.0, 5.0))
                lib.sample("obs", dist.Normal(theta, tau), obs=jnp.ones(2))

        def model(g: Any = global_model, loc: Any = local_model) -> None:
            loc(g())

        guide = ag.AutoSemiDAIS(model, local_model, ag.AutoNormal(global_model), K=2)
        results.append(
            svi_cls(model, guide, optax.adam(0.01), elbo()).run(
                random.key(0), 5, progress_bar=False
            )
        )
    assert_same_dicts(results[0].params, results[1].params, atol=1e-5)


@pytest.mark.slow
def test_surrogate_likelihood_dais_fits_as_numpyro() -> None:
    results = []
    for lib, ag, svi_cls, elbo in LIBS:

        def simple(lib: Any = lib) -> None:
            lib.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))

        def surrogate(lib: Any = lib) -> None:
            scale = lib.param("s", 1.0, constraint=dist.constraints.positive)
            lib.sample("x", dist.Normal(0.0, scale).expand([2]).to_event(1))

        guide = ag.AutoSurrogateLikelihoodDAIS(simple, surrogate, K=2)
        results.append(
            svi_cls(simple, guide, optax.adam(0.01), elbo()).run(
                random.key(0), 5, progress_bar=False
            )
        )
    assert_same_dicts(results[0].params, results[1].params, atol=1e-5)
