"""SVI with optax: convergence to exact posteriors, ELBO values, errors, compile caching."""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest
from jax import random

import plait
from plait.errors import SiteError
from plait.handlers import seed, trace
from plait.infer import SVI, AutoDelta, AutoNormal, Trace_ELBO, TraceEnum_ELBO

pytestmark = pytest.mark.slow  # SVI runs (deselect with -m "not slow")

Y = jnp.array([1.2, 0.4, 2.1, 1.7, 0.9, 1.3, 1.8, 0.6, 1.1, 1.5])
PRIOR_SD = 2.0


def normal_model(y: Any) -> None:
    mu = plait.sample("mu", dist.Normal(0.0, PRIOR_SD))
    with plait.plate("data", y.shape[0]):
        plait.sample("y", dist.Normal(mu, 1.0), obs=y)


def exact_posterior(y: Any) -> tuple[float, float]:
    precision = 1.0 / PRIOR_SD**2 + y.shape[0]
    return float(jnp.sum(y) / precision), float(precision**-0.5)


def test_autonormal_converges_to_the_exact_conjugate_posterior() -> None:
    guide = AutoNormal(normal_model)
    optimizer = optax.adam(optax.exponential_decay(0.05, 1500, 0.02))
    svi = SVI(normal_model, guide, optimizer, Trace_ELBO(num_particles=64))
    result = svi.run(random.key(0), 1500, Y, progress_bar=False)
    mean, sd = exact_posterior(Y)
    np.testing.assert_allclose(result.params["mu_auto_loc"], mean, atol=0.01)
    np.testing.assert_allclose(result.params["mu_auto_scale"], sd, rtol=0.05)
    assert result.losses.shape == (1500,)


def test_autodelta_finds_the_exact_map_of_a_constrained_latent() -> None:
    counts = jnp.array([3.0, 5.0, 2.0, 4.0])

    def gamma_poisson(y: Any) -> None:
        rate = plait.sample("rate", dist.Gamma(2.0, 0.5))
        with plait.plate("data", y.shape[0]):
            plait.sample("y", dist.Poisson(rate), obs=y)

    svi = SVI(gamma_poisson, AutoDelta(gamma_poisson), optax.adam(0.05), Trace_ELBO())
    params = svi.run(random.key(1), 1500, counts, progress_bar=False).params
    mode = (2.0 + counts.sum() - 1.0) / (0.5 + counts.shape[0])
    np.testing.assert_allclose(params["rate_auto_loc"], mode, rtol=1e-3)


def test_trace_elbo_is_log_joint_minus_log_guide_at_the_guide_draw() -> None:
    def guide(y: Any) -> None:
        loc = plait.param("loc", 0.0)
        scale = plait.param("scale", 1.0, constraint=dist.constraints.positive)
        plait.sample("mu", dist.Normal(loc, scale))

    params = {"loc": 0.7, "scale": 0.4}
    key = random.key(3)
    loss = Trace_ELBO().loss(key, params, normal_model, guide, Y)
    _, guide_key = random.split(key)  # NumPyro splits (model, guide)
    mu = (
        trace(seed(plait.handlers.substitute(guide, data=params), guide_key))
        .get_trace(Y)["mu"]
        .value
    )
    expected = -(
        dist.Normal(0.0, PRIOR_SD).log_prob(mu)
        + dist.Normal(mu, 1.0).log_prob(Y).sum()
        - dist.Normal(0.7, 0.4).log_prob(mu)
    )
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_guide_missing_a_latent_site_is_a_clear_error() -> None:
    def two_latents(y: Any) -> None:
        mu = plait.sample("mu", dist.Normal(0.0, 1.0))
        tau = plait.sample("tau", dist.HalfNormal(1.0))
        with plait.plate("data", y.shape[0]):
            plait.sample("y", dist.Normal(mu, tau), obs=y)

    def guide(y: Any) -> None:
        plait.sample("mu", dist.Normal(plait.param("loc", 0.0), 1.0))

    svi = SVI(two_latents, guide, optax.adam(0.1), Trace_ELBO())
    with pytest.raises(SiteError, match=re.escape("the guide has no site 'tau'")) as info:
        svi.run(random.key(0), 10, Y, progress_bar=False)
    assert info.value.site == "tau"


def test_trace_elbo_on_an_enumerated_site_points_to_trace_enum_elbo() -> None:
    def mixture(y: Any) -> None:
        z = plait.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
        plait.sample("y", dist.Normal(3.0 * z, 1.0), obs=y)

    with pytest.raises(SiteError, match=re.escape("use TraceEnum_ELBO")):
        Trace_ELBO().loss(random.key(0), {}, mixture, lambda y: None, 1.0)


def test_second_run_compiles_nothing(count_compiles: Any) -> None:
    svi = SVI(normal_model, AutoNormal(normal_model), optax.adam(0.01), Trace_ELBO())
    first = svi.run(random.key(0), 50, Y, progress_bar=True)
    new_data = Y + 1.0
    with count_compiles() as compiles:
        second = svi.run(random.key(1), 50, new_data, progress_bar=True)
    assert len(compiles) == 0
    assert not np.allclose(first.losses, second.losses)


def test_update_evaluate_and_stable_update() -> None:
    svi = SVI(normal_model, AutoNormal(normal_model), optax.sgd(1e-2), Trace_ELBO())
    state = svi.init(random.key(0), Y)
    loss_before = svi.evaluate(state, Y)
    new_state, loss = svi.update(state, Y)
    assert jnp.isfinite(loss) and jnp.isfinite(loss_before)
    assert not np.allclose(
        svi.get_params(new_state)["mu_auto_loc"], svi.get_params(state)["mu_auto_loc"]
    )
    bad_state, bad_loss = svi.stable_update(new_state, jnp.full_like(Y, jnp.nan))
    assert not jnp.isfinite(bad_loss)
    np.testing.assert_array_equal(
        svi.get_params(bad_state)["mu_auto_loc"], svi.get_params(new_state)["mu_auto_loc"]
    )


def test_init_params_set_the_starting_constrained_values() -> None:
    svi = SVI(normal_model, AutoNormal(normal_model), optax.adam(0.01), Trace_ELBO())
    state = svi.init(random.key(0), Y, init_params={"mu_auto_scale": 0.3})
    np.testing.assert_allclose(svi.get_params(state)["mu_auto_scale"], 0.3, rtol=1e-6)


def test_trace_enum_elbo_with_an_empty_guide_is_minus_the_exact_log_evidence() -> None:
    weights = jnp.array([0.3, 0.7])
    locs = jnp.array([-1.0, 2.0])
    y = jnp.array([-0.8, 1.9, 2.5])

    def mixture(y: Any) -> None:
        with plait.plate("data", y.shape[0]):
            z = plait.sample("z", dist.Categorical(weights), infer={"enumerate": "parallel"})
            plait.sample("y", dist.Normal(locs[z], 1.0), obs=y)

    loss = jax.jit(lambda y: TraceEnum_ELBO().loss(random.key(0), {}, mixture, lambda y: None, y))(
        y
    )
    per_point = jnp.log(weights) + dist.Normal(locs, 1.0).log_prob(y[:, None])
    exact = jnp.sum(jax.scipy.special.logsumexp(per_point, axis=-1))
    np.testing.assert_allclose(loss, -exact, rtol=1e-6)


def test_trace_enum_elbo_on_an_enumerated_scan_hmm_is_minus_the_exact_log_evidence() -> None:
    scan = pytest.importorskip("plait.control_flow").scan
    pytest.importorskip("plait.enum")
    transition = jnp.array([[0.8, 0.15, 0.05], [0.1, 0.7, 0.2], [0.25, 0.25, 0.5]])
    locs = jnp.array([-1.5, 0.0, 2.0])
    y = jnp.array([-1.2, -1.7, 0.3, 2.2, 1.8, -0.1, 0.4, 2.5, -1.4])

    def hmm(y: Any) -> None:
        trans = plait.param("trans", transition, constraint=dist.constraints.simplex)

        def step(z_prev: Any, y_t: Any) -> Any:
            z = plait.sample("z", dist.Categorical(trans[z_prev]), infer={"enumerate": "parallel"})
            plait.sample("y", dist.Normal(locs[z], 0.8), obs=y_t)
            return z, None

        scan(step, jnp.array(0), y)

    loss = jax.jit(lambda p, y: TraceEnum_ELBO().loss(random.key(0), p, hmm, lambda y: None, y))(
        {"trans": transition}, y
    )
    # Brute force over all 3^9 state paths, in float64 NumPy.
    trans64, locs64, y64 = (np.asarray(a, np.float64) for a in (transition, locs, y))
    paths = np.array(np.meshgrid(*[np.arange(3)] * len(y64), indexing="ij")).reshape(len(y64), -1)
    prev = np.vstack([np.zeros((1, paths.shape[1]), int), paths[:-1]])
    log_emission = -0.5 * ((y64[:, None] - locs64[paths]) / 0.8) ** 2 - np.log(
        0.8 * np.sqrt(2 * np.pi)
    )
    log_paths = (np.log(trans64[prev, paths]) + log_emission).sum(0)
    exact = np.log(np.exp(log_paths - log_paths.max()).sum()) + log_paths.max()
    np.testing.assert_allclose(loss, -exact, rtol=1e-5)


def numpyro_pair() -> tuple[Any, Any]:
    import numpyro

    def model(y: Any) -> None:
        mu = numpyro.sample("mu", dist.Normal(0.0, PRIOR_SD))
        with numpyro.plate("data", y.shape[0]):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    def guide(y: Any) -> None:
        loc = numpyro.param("loc", 0.0)
        scale = numpyro.param("scale", 1.0, constraint=dist.constraints.positive)
        numpyro.sample("mu", dist.Normal(loc, scale))

    return model, guide


def plait_guide(y: Any) -> None:
    loc = plait.param("loc", 0.0)
    scale = plait.param("scale", 1.0, constraint=dist.constraints.positive)
    plait.sample("mu", dist.Normal(loc, scale))


def optimisers() -> list[Any]:
    import numpyro.optim
    from jax.example_libraries import optimizers

    return [
        optax.adam(0.05),
        numpyro.optim.Adam(0.05),
        numpyro.optim.ClippedAdam(0.05, clip_norm=1.0),
        optimizers.momentum(0.01, 0.9),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(4))
def test_svi_gives_numpyros_params_with_optax_numpyro_optim_and_jax_optimizers(index: int) -> None:
    from numpyro.infer import SVI as NUMPYRO_SVI
    from numpyro.infer import Trace_ELBO as NUMPYRO_TRACE_ELBO

    ours = SVI(normal_model, plait_guide, optimisers()[index], Trace_ELBO()).run(
        random.key(0), 50, Y, progress_bar=False
    )
    model, guide = numpyro_pair()
    theirs = NUMPYRO_SVI(model, guide, optimisers()[index], NUMPYRO_TRACE_ELBO()).run(
        random.key(0), 50, Y, progress_bar=False
    )
    for name in ("loc", "scale"):
        np.testing.assert_allclose(ours.params[name], theirs.params[name], rtol=1e-5)
    np.testing.assert_allclose(ours.losses, theirs.losses, rtol=1e-5)


def test_svi_refuses_something_that_is_no_optimiser_naming_optax() -> None:
    with pytest.raises(TypeError, match="optax"):
        SVI(normal_model, plait_guide, "adam", Trace_ELBO())


def test_update_stable_update_and_evaluate_use_numpyros_keys() -> None:
    from numpyro.infer import SVI as NUMPYRO_SVI
    from numpyro.infer import Trace_ELBO as NUMPYRO_TRACE_ELBO

    model, guide = numpyro_pair()
    theirs = NUMPYRO_SVI(model, guide, optax.sgd(0.01), NUMPYRO_TRACE_ELBO())
    ours = SVI(normal_model, plait_guide, optax.sgd(0.01), Trace_ELBO())
    ours_state, theirs_state = ours.init(random.key(3), Y), theirs.init(random.key(3), Y)
    np.testing.assert_allclose(ours.evaluate(ours_state, Y), theirs.evaluate(theirs_state, Y))
    for step in (ours.update, ours.stable_update):
        ours_state, ours_loss = step(ours_state, Y)
        theirs_state, theirs_loss = theirs.update(theirs_state, Y)
        np.testing.assert_allclose(ours_loss, theirs_loss, rtol=1e-6)
    np.testing.assert_allclose(
        ours.get_params(ours_state)["loc"], theirs.get_params(theirs_state)["loc"], rtol=1e-6
    )


def test_svi_passes_static_kwargs_to_the_model_and_guide() -> None:
    def scaled(y: Any, factor: float) -> None:
        mu = plait.sample("mu", dist.Normal(0.0, PRIOR_SD))
        with plait.plate("data", y.shape[0]):
            plait.sample("y", dist.Normal(factor * mu, 1.0), obs=y)

    def guide(y: Any, factor: float) -> None:
        plait.sample("mu", dist.Normal(plait.param("loc", 0.0), 1.0))

    svi = SVI(scaled, guide, optax.sgd(0.01), Trace_ELBO(), factor=2.0)
    state = svi.init(random.key(0), Y)
    _, loss = svi.update(state, Y)
    expected = SVI(scaled, guide, optax.sgd(0.01), Trace_ELBO()).update(
        SVI(scaled, guide, optax.sgd(0.01), Trace_ELBO()).init(random.key(0), Y, factor=2.0),
        Y,
        factor=2.0,
    )[1]
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


@pytest.mark.slow
def test_a_model_reading_concrete_data_values_runs_under_svi() -> None:
    def counts(y: Any) -> None:
        k = int(np.max(y)) + 1  # every model of NumPyro's annotation example does this
        probs = plait.sample("probs", dist.Dirichlet(jnp.ones(k)))
        with plait.plate("data", y.shape[0]):
            plait.sample("y", dist.Categorical(probs), obs=y)

    y = np.array([0, 2, 1, 2, 2])  # NumPy data, as in NumPyro's example
    guide = AutoDelta(counts, init_loc_fn=plait.infer.init_to_feasible)
    svi = SVI(counts, guide, optax.adam(0.05), Trace_ELBO())
    result = svi.run(random.key(0), 300, y, progress_bar=False)
    # MAP of a Dirichlet(1, 1, 1) with counts (1, 1, 3): the frequencies.
    np.testing.assert_allclose(result.params["probs_auto_loc"], [0.2, 0.2, 0.6], atol=0.02)
    _, loss = svi.update(result.state, y)
    assert jnp.isfinite(loss)


@pytest.mark.slow
def test_a_changed_global_is_seen_by_the_next_run() -> None:
    # The compiled loop is reused only when the traced computation is the same.
    shift = {"value": 0.0}

    def shifted(y: Any) -> None:
        mu = plait.sample("mu", dist.Normal(0.0, 10.0))
        with plait.plate("data", y.shape[0]):
            plait.sample("y", dist.Normal(mu + shift["value"], 1.0), obs=y)

    svi = SVI(shifted, AutoDelta(shifted), optax.adam(0.1), Trace_ELBO())
    first = svi.run(random.key(0), 300, Y, progress_bar=False).params["mu_auto_loc"]
    shift["value"] = 5.0
    second = svi.run(random.key(0), 300, Y, progress_bar=False).params["mu_auto_loc"]
    np.testing.assert_allclose(first - second, 5.0, atol=0.05)


@pytest.mark.parametrize("model_init", [None, 3.0])
def test_a_param_shared_by_model_and_guide_takes_the_guides_value(model_init: Any) -> None:
    import numpyro
    from numpyro.infer import SVI as NUMPYRO_SVI
    from numpyro.infer import Trace_ELBO as NUMPYRO_TRACE_ELBO

    def make(lib: Any) -> tuple[Any, Any]:
        def model() -> None:
            shared = (
                lib.param("shared", model_init) if model_init is not None else lib.param("shared")
            )
            lib.sample("x", dist.Normal(shared, 1.0))

        def guide() -> None:
            shared = lib.param("shared", 1.5)
            lib.sample("x", dist.Normal(shared, 1.0))

        return model, guide

    ours = SVI(*make(plait), optax.adam(0.1), Trace_ELBO())
    theirs = NUMPYRO_SVI(*make(numpyro), optax.adam(0.1), NUMPYRO_TRACE_ELBO())
    ours_params = ours.get_params(ours.init(random.key(0)))
    theirs_params = theirs.get_params(theirs.init(random.key(0)))
    assert float(ours_params["shared"]) == float(theirs_params["shared"]) == 1.5


def test_run_needs_a_positive_number_of_steps() -> None:
    svi = SVI(normal_model, plait_guide, optax.adam(0.1), Trace_ELBO())
    with pytest.raises(ValueError, match="positive"):
        svi.run(random.key(0), 0, Y)


def test_forward_mode_differentiation_gives_the_reverse_mode_step() -> None:
    svi = SVI(normal_model, plait_guide, optax.sgd(0.01), Trace_ELBO())
    state = svi.init(random.key(0), Y)
    reverse, _ = svi.update(state, Y)
    forward, _ = svi.update(state, Y, forward_mode_differentiation=True)
    np.testing.assert_allclose(
        svi.get_params(forward)["loc"], svi.get_params(reverse)["loc"], rtol=1e-5
    )
