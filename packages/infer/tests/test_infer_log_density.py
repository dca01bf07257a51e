"""log_density and potential_energy against NumPyro's on the same models."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import numpyro.handlers
import pytest
from numpyro.infer.util import log_density as np_log_density
from numpyro.infer.util import potential_energy as np_potential_energy

import plait
import plait.handlers
from plait.errors import SiteError
from plait.infer import log_density, potential_energy

PLAIT = SimpleNamespace(lib=plait, handlers=plait.handlers)
NUMPYRO = SimpleNamespace(lib=numpyro, handlers=numpyro.handlers)

X = jnp.linspace(-1.0, 1.0, 6)
Y = jnp.array([0.3, -0.2, 1.1, 0.4, -0.7, 0.9])


def plated(P: Any) -> Callable[..., None]:
    def model(x: Any, y: Any) -> None:
        mu = P.lib.sample("mu", dist.Normal(0.0, 2.0))
        sigma = P.lib.sample("sigma", dist.HalfCauchy(1.0))
        with P.lib.plate("groups", 2, dim=-2):
            offset = P.lib.sample("offset", dist.Normal(0.0, 1.0))
        with P.lib.plate("data", 6):
            P.lib.sample("y", dist.Normal(mu + offset * x, sigma), obs=y)

    return model


def masked(P: Any) -> Callable[..., None]:
    def model(x: Any, y: Any) -> None:
        mu = P.lib.sample("mu", dist.Normal(0.0, 1.0))
        with P.lib.plate("data", 6), P.handlers.mask(mask=x > 0):
            P.lib.sample("y", dist.Normal(mu, 1.0), obs=y)
        with P.handlers.mask(mask=False):
            P.lib.factor("never", -jnp.inf)

    return model


def scaled(P: Any) -> Callable[..., None]:
    def model(x: Any, y: Any) -> None:
        mu = P.lib.sample("mu", dist.Normal(0.0, 1.0))
        with P.handlers.scale(scale=3.0), P.lib.plate("data", 6), P.handlers.scale(scale=0.5):
            P.lib.sample("y", dist.Normal(mu, 1.0), obs=y)
        P.lib.factor("penalty", -0.5 * mu**2)

    return model


def subsampled(P: Any) -> Callable[..., None]:
    def model(x: Any, y: Any) -> None:
        mu = P.lib.sample("mu", dist.Normal(0.0, 1.0))
        with P.lib.plate("data", 6, subsample_size=3):
            scale = P.lib.param(
                "scale", jnp.ones(6), constraint=dist.constraints.positive, event_dim=0
            )
            xs = P.lib.subsample(x, event_dim=0)
            ys = P.lib.subsample(y, event_dim=0)
            local = P.lib.sample("local", dist.Normal(0.0, 1.0))
            P.lib.sample("y", dist.Normal(mu + local * xs, scale), obs=ys)

    return model


def constrained(P: Any) -> Callable[..., None]:
    def model(x: Any, y: Any) -> None:
        probs = P.lib.sample("probs", dist.Dirichlet(jnp.ones(3)))
        rate = P.lib.sample("rate", dist.Gamma(2.0, 1.0))
        frac = P.lib.sample("frac", dist.Uniform(-1.0, 2.0))
        P.lib.deterministic("total", rate * frac)
        with P.lib.plate("data", 6):
            P.lib.sample("y", dist.Normal(probs[0] * x + frac, rate), obs=y)

    return model


def matrix_valued(P: Any) -> Callable[..., None]:
    def model(x: Any, y: Any) -> None:
        corr = P.lib.sample("corr", dist.LKJCholesky(3, 2.0))
        with P.lib.plate("data", 6):
            P.lib.sample("y", dist.Normal(x * corr[1, 0], corr[2, 2]), obs=y)

    return model


MODELS = {
    "plated": plated,
    "masked": masked,
    "scaled": scaled,
    "subsampled": subsampled,
    "constrained": constrained,
    "matrix_valued": matrix_valued,
}

CONSTRAINED_VALUES: dict[str, dict[str, Any]] = {
    "plated": {"mu": 0.4, "sigma": 1.3, "offset": jnp.array([[0.2], [-0.5]])},
    "masked": {"mu": -0.3},
    "scaled": {"mu": 0.8},
    "subsampled": {
        "mu": 0.1,
        "local": jnp.array([0.5, -0.1, 0.3]),
        "data": jnp.array([4, 1, 5]),
        "scale": jnp.linspace(0.5, 2.0, 6),
    },
    "constrained": {
        "probs": jnp.array([0.2, 0.5, 0.3]),
        "rate": 1.7,
        "frac": 0.25,
    },
    "matrix_valued": {
        "corr": jnp.linalg.cholesky(
            jnp.array([[1.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 1.0]])
        ),
    },
}

UNCONSTRAINED_VALUES: dict[str, dict[str, Any]] = {
    "plated": {"mu": 0.4, "sigma": -0.7, "offset": jnp.array([[0.2], [-0.5]])},
    "masked": {"mu": -0.3},
    "scaled": {"mu": 0.8},
    "subsampled": {
        "mu": 0.1,
        "local": jnp.array([0.5, -0.1, 0.3]),
        "data": jnp.array([4, 1, 5]),
        "scale": jnp.linspace(0.5, 2.0, 6),
    },
    "constrained": {
        "probs": jnp.array([0.3, -1.2]),
        "rate": 0.4,
        "frac": -0.6,
    },
    "matrix_valued": {"corr": jnp.array([0.2, -0.4, 0.7])},
}


@pytest.mark.parametrize("name", list(MODELS))
def test_log_density_equals_numpyro(name: str) -> None:
    values = CONSTRAINED_VALUES[name]
    ours, trace = log_density(MODELS[name](PLAIT), (X, Y), {}, values)
    theirs, _ = np_log_density(MODELS[name](NUMPYRO), (X, Y), {}, values)
    assert jnp.isfinite(ours)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
    assert "y" in trace


@pytest.mark.parametrize("name", list(MODELS))
def test_potential_energy_equals_numpyro(name: str) -> None:
    values = UNCONSTRAINED_VALUES[name]
    ours = potential_energy(MODELS[name](PLAIT), (X, Y), {}, values)
    theirs = np_potential_energy(MODELS[name](NUMPYRO), (X, Y), {}, values)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["plated", "subsampled", "constrained"])
def test_potential_energy_gradient_under_jit_equals_numpyro(name: str) -> None:
    values = UNCONSTRAINED_VALUES[name]
    latent = {k: v for k, v in values.items() if k not in ("data", "scale")}
    fixed = {k: v for k, v in values.items() if k in ("data", "scale")}

    def ours(z: Any) -> Any:
        return potential_energy(MODELS[name](PLAIT), (X, Y), {}, {**z, **fixed})

    def theirs(z: Any) -> Any:
        return np_potential_energy(MODELS[name](NUMPYRO), (X, Y), {}, {**z, **fixed})

    value, grad = jax.jit(jax.value_and_grad(ours))(latent)
    expected_value, expected_grad = jax.jit(jax.value_and_grad(theirs))(latent)
    np.testing.assert_allclose(value, expected_value, rtol=1e-6, atol=1e-6)
    for k in latent:
        np.testing.assert_allclose(grad[k], expected_grad[k], rtol=1e-5, atol=1e-6)


def test_subsampled_plate_scales_log_density_by_size_over_subsample_size() -> None:
    values = CONSTRAINED_VALUES["subsampled"]
    ours, _ = log_density(MODELS["subsampled"](PLAIT), (X, Y), {}, values)
    idx = values["data"]
    local = values["local"]
    expected = dist.Normal(0.0, 1.0).log_prob(values["mu"]) + 2.0 * (
        dist.Normal(0.0, 1.0).log_prob(local).sum()
        + dist.Normal(values["mu"] + local * X[idx], values["scale"][idx]).log_prob(Y[idx]).sum()
    )
    np.testing.assert_allclose(ours, expected, rtol=1e-6)


def test_log_density_of_model_without_sites_is_zero() -> None:
    value, trace = log_density(lambda: None, (), {}, {})
    assert float(value) == 0.0 and trace == {}


def test_failed_log_prob_names_the_site_and_shows_shapes() -> None:
    class Broken(dist.Normal):  # type: ignore[misc]
        def log_prob(self, value: Any) -> Any:
            raise ValueError("incompatible shapes")

    def model() -> None:
        plait.sample("x", Broken(0.0, 1.0), obs=1.0)

    with pytest.raises(SiteError, match=re.escape("site 'x' failed")) as info:
        log_density(model, (), {}, {})
    assert "site  type" in str(info.value)


@pytest.fixture
def without_enum_plugin() -> Iterator[None]:
    pm = plait.plugin_manager()
    removed = pm.unregister(name="enum") if pm.has_plugin("enum") else None
    try:
        yield
    finally:
        if removed is not None:
            pm.register(removed, name="enum")


@pytest.mark.usefixtures("without_enum_plugin")
def test_enumerated_site_without_enum_plugin_is_a_clear_error() -> None:
    def model() -> None:
        z = plait.sample("z", dist.Bernoulli(0.3), infer={"enumerate": "parallel"})
        plait.sample("x", dist.Normal(z, 1.0), obs=0.5)

    with pytest.raises(SiteError, match=re.escape("site 'z' asks to be enumerated")) as info:
        log_density(model, (), {}, {})
    assert "plait-enum" in str(info.value)
    assert info.value.site == "z"


def test_enumerated_site_with_a_value_needs_no_plugin() -> None:
    def model() -> None:
        z = plait.sample("z", dist.Bernoulli(0.3), infer={"enumerate": "parallel"})
        plait.sample("x", dist.Normal(z, 1.0), obs=0.5)

    value, _ = log_density(model, (), {}, {"z": 1.0})
    expected = jnp.log(0.3) + dist.Normal(1.0, 1.0).log_prob(0.5)
    np.testing.assert_allclose(value, expected, rtol=1e-6)


class _AnswersFirst:
    """A plugin whose log density wins over plait-infer's (which is trylast)."""

    @plait.hookimpl
    def plait_log_density(self, model: Any, model_args: Any, model_kwargs: Any, params: Any) -> Any:
        return jnp.asarray(42.0), {}


def test_log_density_asks_the_hook_and_plugins_answer_first() -> None:
    plait.register(_AnswersFirst(), name="answers-first")
    try:
        value, trace = log_density(lambda: None, (), {}, {})
    finally:
        plait.unregister("answers-first")
    assert float(value) == 42.0 and trace == {}
