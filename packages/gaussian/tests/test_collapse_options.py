"""Which sites ``collapse`` takes: the opt-out, the opt-in error, the fallback to sampling."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import plait
from plait.control_flow import scan
from plait.errors import SiteError
from plait.gaussian import collapse
from plait.infer import log_density

Y = jnp.array([0.3, -0.4, 0.9, 1.7])
XS = {"x_0": jnp.asarray(0.1), "x": jnp.array([0.2, -0.1, 0.8, 1.5])}


def model(y: Any, mean: Any = lambda x: x, infer: Any = None) -> None:
    def step(x_prev: Any, y_t: Any) -> Any:
        x = plait.sample("x", dist.Normal(mean(x_prev), 0.7), infer=infer or {})
        plait.sample("y", dist.Normal(x, 0.4), obs=y_t)
        return x, None

    scan(step, plait.sample("x_0", dist.Normal(0.0, 1.0)), y)


def latents(tr: Any) -> list[str]:
    return [n for n, s in tr.items() if s.type == "sample" and not s.is_observed]


def test_opt_out_keeps_the_chain_sampled() -> None:
    kwargs = {"infer": {"collapse": False}}
    value, tr = log_density(collapse(model), (Y,), kwargs, XS)
    reference, _ = log_density(model, (Y,), kwargs, XS)
    assert latents(tr) == ["x_0", "x"]
    np.testing.assert_allclose(float(value), float(reference), rtol=1e-6)


def test_collapsed_differs_from_sampled() -> None:
    collapsed, tr = log_density(collapse(model), (Y,), {}, {})
    sampled, _ = log_density(model, (Y,), {}, XS)
    assert latents(tr) == [] and float(collapsed) != pytest.approx(float(sampled))


def test_non_linear_site_stays_sampled() -> None:
    kwargs = {"mean": jnp.sin}
    value, tr = log_density(collapse(model), (Y,), kwargs, XS)
    reference, _ = log_density(model, (Y,), kwargs, XS)
    assert latents(tr) == ["x_0", "x"]
    np.testing.assert_allclose(float(value), float(reference), rtol=1e-6)


def test_non_linear_site_that_asks_is_an_error() -> None:
    kwargs = {"mean": jnp.sin, "infer": {"collapse": True}}
    with pytest.raises(SiteError, match=r"site 'x'.*`sin` of the previous latent"):
        log_density(collapse(model), (Y,), kwargs, {})


def test_latent_scale_that_asks_is_an_error() -> None:
    def scaled(y: Any) -> None:
        def step(x_prev: Any, y_t: Any) -> Any:
            x = plait.sample("x", dist.Normal(x_prev, jnp.exp(x_prev)), infer={"collapse": True})
            plait.sample("y", dist.Normal(x, 0.4), obs=y_t)
            return x, None

        scan(step, plait.sample("x_0", dist.Normal(0.0, 1.0)), y)

    with pytest.raises(SiteError, match=r"site 'x'.*scale"):
        log_density(collapse(scaled), (Y,), {}, {})


def test_non_gaussian_site_that_asks_is_an_error() -> None:
    def laplace(y: Any) -> None:
        def step(x_prev: Any, y_t: Any) -> Any:
            x = plait.sample("x", dist.Laplace(x_prev, 0.7), infer={"collapse": True})
            plait.sample("y", dist.Normal(x, 0.4), obs=y_t)
            return x, None

        scan(step, plait.sample("x_0", dist.Normal(0.0, 1.0)), y)

    with pytest.raises(SiteError, match=r"site 'x'.*Laplace"):
        log_density(collapse(laplace), (Y,), {}, {})


def test_non_gaussian_observation_keeps_the_chain_sampled() -> None:
    def poisson(y: Any) -> None:
        def step(x_prev: Any, y_t: Any) -> Any:
            x = plait.sample("x", dist.Normal(x_prev, 0.7))
            plait.sample("y", dist.Poisson(jnp.exp(x)), obs=y_t)
            return x, None

        scan(step, plait.sample("x_0", dist.Normal(0.0, 1.0)), y)

    counts = jnp.array([1.0, 0.0, 3.0, 2.0])
    value, tr = log_density(collapse(poisson), (counts,), {}, XS)
    reference, _ = log_density(poisson, (counts,), {}, XS)
    assert latents(tr) == ["x_0", "x"]
    np.testing.assert_allclose(float(value), float(reference), rtol=1e-6)
