"""ELBOs against NumPyro's (same key: the same loss and gradient) and closed forms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from jax import random

import plait
import plait.infer as infer

Y = jnp.array([1.2, 0.4, 2.1, 1.7, 0.9])
PARAMS = {"loc": jnp.array(0.7), "scale": jnp.array(0.4), "s_loc": jnp.array(-0.2)}


def normal_model(lib: Any) -> Callable[..., None]:
    def model(y: Any) -> None:
        mu = lib.sample("mu", dist.Normal(0.0, 2.0))
        sigma = lib.sample("sigma", dist.LogNormal(0.0, 1.0))
        with lib.plate("data", y.shape[0]):
            lib.sample("y", dist.Normal(mu, sigma), obs=y)

    return model


def normal_guide(lib: Any) -> Callable[..., None]:
    def guide(y: Any) -> None:
        loc = lib.param("loc", 0.0)
        scale = lib.param("scale", 1.0, constraint=dist.constraints.positive)
        lib.sample("mu", dist.Normal(loc, scale))
        lib.sample("sigma", dist.LogNormal(lib.param("s_loc", 0.0), 0.3))

    return guide


def both(
    elbo: Callable[[Any], Any], model: Any = normal_model, guide: Any = normal_guide, *args: Any
) -> tuple[Any, Any]:
    """``value_and_grad`` of the loss at PARAMS, plait's and NumPyro's, with key 0."""
    out = []
    for lib in (plait, numpyro):
        m, g, e = model(lib), guide(lib), elbo(lib)
        fn = jax.jit(lambda p, m=m, g=g, e=e: e.loss(random.key(0), p, m, g, *(args or (Y,))))
        out.append(jax.value_and_grad(fn)(PARAMS))
    return out[0], out[1]


def assert_close(ours: Any, theirs: Any, rtol: float = 1e-5) -> None:
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-6)


def lib_infer(lib: Any) -> Any:
    return infer if lib is plait else numpyro.infer


@pytest.mark.parametrize("vectorize", [True, False])
def test_trace_elbo_with_particles_is_numpyros(vectorize: bool) -> None:
    ours, theirs = both(
        lambda lib: lib_infer(lib).Trace_ELBO(num_particles=3, vectorize_particles=vectorize)
    )
    assert_close(ours, theirs)


def test_vmapped_and_mapped_particles_give_the_same_loss() -> None:
    model, guide = normal_model(plait), normal_guide(plait)
    values = [
        infer.Trace_ELBO(num_particles=4, vectorize_particles=v).loss(
            random.key(1), PARAMS, model, guide, Y
        )
        for v in (True, False)
    ]
    np.testing.assert_allclose(values[0], values[1], rtol=1e-6)


def test_sum_sites_false_gives_numpyros_per_site_terms() -> None:
    terms = []
    for lib in (plait, numpyro):
        elbo = lib_infer(lib).Trace_ELBO(sum_sites=False)
        terms.append(elbo.loss(random.key(0), PARAMS, normal_model(lib), normal_guide(lib), Y))
    assert sorted(terms[0]) == sorted(terms[1]) == ["mu", "sigma", "y"]
    assert_close(
        {k: terms[0][k] for k in sorted(terms[0])}, {k: terms[1][k] for k in sorted(terms[1])}
    )


def test_multi_sample_guide_is_numpyros() -> None:
    def guide(lib: Any) -> Callable[..., None]:
        def g(y: Any) -> None:
            loc = lib.param("loc", 0.0)
            with lib.plate("samples", 4, dim=-1):
                lib.sample("mu", dist.Normal(loc, 0.5))
                lib.sample("sigma", dist.LogNormal(lib.param("s_loc", 0.0), 0.3))

        return g

    ours, theirs = both(lambda lib: lib_infer(lib).Trace_ELBO(multi_sample_guide=True), guide=guide)
    assert_close(ours, theirs)


def test_trace_mean_field_elbo_is_numpyros_and_its_kl_is_closed_form() -> None:
    ours, theirs = both(lambda lib: lib_infer(lib).TraceMeanField_ELBO())
    assert_close(ours, theirs)

    def model() -> None:
        plait.sample("x", dist.Normal(1.0, 2.0))

    def guide() -> None:
        plait.sample("x", dist.Normal(plait.param("m", 0.0), plait.param("s", 0.5)))

    loss = infer.TraceMeanField_ELBO().loss(random.key(0), {"m": 0.3, "s": 0.5}, model, guide)
    # KL(N(0.3, 0.5) || N(1, 2)) = log(2 / 0.5) + (0.25 + 0.49) / 8 - 1/2.
    np.testing.assert_allclose(loss, np.log(4.0) + 0.74 / 8 - 0.5, rtol=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 2.0])
def test_renyi_elbo_is_numpyros(alpha: float) -> None:
    ours, theirs = both(lambda lib: lib_infer(lib).RenyiELBO(alpha=alpha, num_particles=4))
    assert_close(ours, theirs)


def test_renyi_elbo_with_a_common_subsampled_plate_is_numpyros() -> None:
    def model(lib: Any) -> Callable[..., None]:
        def m(y: Any) -> None:
            with lib.plate("batch", 10, subsample_size=3):
                z = lib.sample("z", dist.Normal(0.0, 1.0))
                lib.sample("y", dist.Normal(z, 1.0), obs=lib.subsample(y, event_dim=0))

        return m

    def guide(lib: Any) -> Callable[..., None]:
        def g(y: Any) -> None:
            with lib.plate("batch", 10, subsample_size=3):
                lib.sample(
                    "z", dist.Normal(lib.param("loc", 0.0) * lib.subsample(y, event_dim=0), 1.0)
                )

        return g

    ours, theirs = both(
        lambda lib: lib_infer(lib).RenyiELBO(num_particles=3), model, guide, jnp.arange(10.0)
    )
    assert_close(ours, theirs)


def test_renyi_elbo_refuses_alpha_one() -> None:
    with pytest.raises(ValueError, match="should not be equal to 1"):
        infer.RenyiELBO(alpha=1)


class _ScoredBeta(dist.Beta):
    """A Beta with its reparameterised sampler switched off: the ELBO must use the
    score function (a test device, not a distribution)."""

    has_rsample = False


def coin(lib: Any) -> Callable[..., None]:
    def model(y: Any) -> None:
        z = lib.sample("z", dist.Bernoulli(0.3))
        lib.sample("y", dist.Normal(2.0 * z, 1.0), obs=y)

    return model


def coin_guide(lib: Any) -> Callable[..., None]:
    def guide(y: Any) -> None:
        q = lib.param("q", 0.5, constraint=dist.constraints.unit_interval)
        lib.sample("z", dist.Bernoulli(q))
        lib.sample("w", dist.Normal(q, 1.0), infer={"is_auxiliary": True})

    return guide


def test_trace_graph_elbo_score_function_gradient_is_numpyros() -> None:
    for key in range(3):
        grads = []
        for lib in (plait, numpyro):
            elbo = lib_infer(lib).TraceGraph_ELBO(num_particles=2)
            m, g = coin(lib), coin_guide(lib)
            fn = jax.jit(lambda p, m=m, g=g, e=elbo, k=key: e.loss(random.key(k), p, m, g, 1.5))
            grads.append(jax.value_and_grad(fn)({"q": jnp.array(0.4)}))
        assert_close(grads[0], grads[1])


def test_trace_graph_elbo_gradient_through_a_continuous_score_function_site_is_numpyros() -> None:
    flips = jnp.array([1.0, 0.0, 1.0, 1.0])

    def model(lib: Any) -> Callable[..., None]:
        def m(y: Any) -> None:
            p = lib.sample("p", dist.Beta(2.0, 2.0))
            with lib.plate("flips", y.shape[0]):
                lib.sample("y", dist.Bernoulli(p), obs=y)

        return m

    def guide(lib: Any) -> Callable[..., None]:
        def g(y: Any) -> None:
            a = lib.param("a", 2.0, constraint=dist.constraints.positive)
            lib.sample("p", _ScoredBeta(a, 3.0))

        return g

    results = []
    for lib in (plait, numpyro):
        elbo = lib_infer(lib).TraceGraph_ELBO(num_particles=4)
        m, g = model(lib), guide(lib)
        fn = jax.jit(lambda p, m=m, g=g, e=elbo: e.loss(random.key(0), p, m, g, flips))
        results.append(jax.value_and_grad(fn)({"a": jnp.array(2.0)}))
    assert_close(results[0], results[1])


def test_provenance_of_the_costs_is_numpyros() -> None:
    from numpyro.infer.elbo import get_nonreparam_deps

    from plait.infer._elbo_graph import get_nonreparam_deps as ours_deps

    ours = ours_deps(coin(plait), coin_guide(plait), (1.5,), {}, {"q": 0.4})
    theirs = get_nonreparam_deps(coin(numpyro), coin_guide(numpyro), (1.5,), {}, {"q": 0.4})
    assert ours == theirs
    assert ours[0]["y"] == frozenset({"z"})


@pytest.mark.slow
def test_trace_graph_elbo_finds_the_exact_beta_bernoulli_posterior() -> None:
    flips = jnp.array([1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0])

    def model(y: Any) -> None:
        p = plait.sample("p", dist.Beta(2.0, 2.0))
        with plait.plate("flips", y.shape[0]):
            plait.sample("y", dist.Bernoulli(p), obs=y)

    def guide(y: Any) -> None:
        a = plait.param("a", 2.0, constraint=dist.constraints.positive)
        b = plait.param("b", 2.0, constraint=dist.constraints.positive)
        plait.sample("p", _ScoredBeta(a, b))

    optimizer = optax.adam(optax.exponential_decay(0.05, 3000, 0.05))
    svi = infer.SVI(model, guide, optimizer, infer.TraceGraph_ELBO(num_particles=64))
    params = svi.run(random.key(0), 3000, flips, progress_bar=False).params
    a, b = 2.0 + flips.sum(), 2.0 + (1 - flips).sum()  # Beta(10, 4)
    np.testing.assert_allclose(params["a"] / (params["a"] + params["b"]), a / (a + b), atol=0.02)
    np.testing.assert_allclose(params["a"] + params["b"], a + b, rtol=0.25)


def test_trace_elbo_refuses_a_score_function_site_and_points_to_trace_graph() -> None:
    with pytest.raises(ValueError, match="TraceGraph_ELBO"):
        infer.Trace_ELBO().loss(random.key(0), {"q": 0.4}, coin(plait), coin_guide(plait), 1.5)


def mutable_model(lib: Any) -> Callable[..., None]:
    def model(y: Any) -> None:
        state = (
            lib.primitives.mutable("stats", {"mean": jnp.zeros(())})
            if lib is numpyro
            else (lib.mutable("stats", {"mean": jnp.zeros(())}))
        )
        mu = lib.sample("mu", dist.Normal(0.0, 2.0))
        state["mean"] = 0.9 * state["mean"] + 0.1 * y.mean()
        with lib.plate("data", y.shape[0]):
            lib.sample("y", dist.Normal(mu + state["mean"], 1.0), obs=y)

    return model


def mu_guide(lib: Any) -> Callable[..., None]:
    def guide(y: Any) -> None:
        lib.sample("mu", dist.Normal(lib.param("loc", 0.0), 0.5))

    return guide


@pytest.mark.slow
def test_svi_carries_mutable_state_as_numpyro() -> None:
    results = []
    for lib in (plait, numpyro):
        svi = lib_infer(lib).SVI(
            mutable_model(lib), mu_guide(lib), optax.adam(0.05), lib_infer(lib).Trace_ELBO()
        )
        results.append(svi.run(random.key(0), 20, Y, progress_bar=False))
    ours, theirs = results
    np.testing.assert_allclose(ours.params["loc"], theirs.params["loc"], rtol=1e-5)
    np.testing.assert_allclose(
        ours.state.mutable_state["stats"]["mean"],
        theirs.state.mutable_state["stats"]["mean"],
        rtol=1e-5,
    )
    # The state is updated once by SVI.init's trace and once per step.
    expected = sum(0.9**k * 0.1 * float(Y.mean()) for k in range(21))
    np.testing.assert_allclose(ours.state.mutable_state["stats"]["mean"], expected, rtol=1e-4)


def _plate_warnings(lib: Any, elbo: Any, y: Any, plated: bool) -> tuple[float, list[str]]:
    def model(y: Any) -> None:
        mu = lib.sample("mu", dist.Normal(0.0, 1.0))
        if plated:
            with lib.plate("N", y.shape[-1]):
                lib.sample("obs", dist.Normal(mu, 1.0), obs=y)
        else:
            lib.sample("obs", dist.Normal(mu, 1.0), obs=y)

    def guide(y: Any) -> None:
        lib.sample("mu", dist.Normal(0.5, 1.0))

    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss = elbo.loss(random.key(0), {}, model, guide, y)
    return float(loss), [str(w.message) for w in caught if "plate statement" in str(w.message)]


@pytest.mark.parametrize(
    ("shape", "plated"), [((5, 10), True), ((10,), True), ((7,), False), ((3, 7), False)]
)
@pytest.mark.parametrize("name", ["Trace_ELBO", "TraceMeanField_ELBO", "TraceGraph_ELBO"])
def test_a_batch_dim_no_plate_declares_is_warned_about_as_numpyro(
    name: str, shape: tuple[int, ...], plated: bool
) -> None:
    y = jnp.linspace(-1.0, 1.0, int(np.prod(shape))).reshape(shape)
    ours = _plate_warnings(plait, getattr(infer, name)(), y, plated)
    theirs = _plate_warnings(numpyro, getattr(numpyro.infer, name)(), y, plated)
    assert ours[1] == theirs[1]  # NumPyro's "loose" rule: only inside a plate
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-6)
