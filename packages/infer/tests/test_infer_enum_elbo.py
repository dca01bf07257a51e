"""Guide-side enumeration in TraceEnum_ELBO against NumPyro's (funsor) and closed forms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax import random

import plait
from plait.infer import TraceEnum_ELBO

pytest.importorskip("plait.enum")
funsor = pytest.importorskip("funsor")
funsor.set_backend("jax")

P = jnp.array([0.27, 0.73])


def numpyro_elbo(**options: Any) -> Any:
    return numpyro.infer.TraceEnum_ELBO(**options)


def value_and_grads(
    make: Callable[[Any], tuple[Any, Any]], params: dict[str, Any], *args: Any
) -> list[Any]:
    """``value_and_grad`` of the loss at ``params``, plait's and NumPyro's, key 0."""
    out = []
    for lib, elbo in ((plait, TraceEnum_ELBO), (numpyro, numpyro_elbo)):
        model, guide = make(lib)

        def loss(p: dict[str, Any], model: Any = model, guide: Any = guide, e: Any = elbo) -> Any:
            return e().loss(random.key(0), p, model, guide, *args)

        out.append(jax.value_and_grad(loss)(params))
    return out


def assert_close(ours: Any, theirs: Any) -> None:
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def plates(lib: Any) -> tuple[Any, Any]:
    def model(params: Any) -> None:
        d = dist.Categorical(P)
        outer, inner = lib.plate("outer", 2, dim=-1), lib.plate("inner", 2, dim=-2)
        lib.sample("w", d)
        with outer:
            lib.sample("x", d)
        with inner:
            lib.sample("y", d)
        with outer, inner:
            lib.sample("z", d)

    def guide(params: Any) -> None:
        d = dist.Categorical(params["q"])
        outer, inner = lib.plate("outer", 2, dim=-1), lib.plate("inner", 2, dim=-2)
        lib.sample("w", d, infer={"enumerate": "parallel"})
        with outer:
            lib.sample("x", d, infer={"enumerate": "parallel"})
        with inner:
            lib.sample("y", d, infer={"enumerate": "parallel"})
        with outer, inner:
            lib.sample("z", d, infer={"enumerate": "parallel"})

    return model, guide


def test_guide_enumeration_in_plates_is_an_exact_kl_as_numpyros() -> None:
    results = []
    for lib, elbo in ((plait, TraceEnum_ELBO), (numpyro, numpyro_elbo)):
        model, guide = plates(lib)

        def loss(q: Any, model: Any = model, guide: Any = guide, e: Any = elbo) -> Any:
            return e().loss(random.key(0), {}, model, guide, {"q": q})

        results.append(jax.value_and_grad(loss)(jnp.array([0.75, 0.25])))
    q = jnp.array([0.75, 0.25])
    kl = jnp.sum(q * (jnp.log(q) - jnp.log(P)))
    np.testing.assert_allclose(results[0][0], (1 + 2 + 2 + 4) * kl, rtol=1e-5)
    assert_close(results[0], results[1])


def mixture(lib: Any) -> tuple[Any, Any]:
    def model(y: Any) -> None:
        x = lib.sample("x", dist.Categorical(jnp.array([0.4, 0.6])))
        mu = lib.sample("mu", dist.Normal(2.0 * x, 1.0))
        probs = jnp.array([[0.75, 0.25], [0.55, 0.45]])[x]
        extra = lib.sample("extra", dist.Categorical(probs), infer={"enumerate": "parallel"})
        with lib.plate("data", 3):
            lib.sample("obs", dist.Normal(mu + extra, 1.0), obs=y)

    def guide(y: Any) -> None:
        probs = lib.param("probs", jnp.array([0.1, 0.9]), constraint=dist.constraints.simplex)
        x = lib.sample("x", dist.Categorical(probs), infer={"enumerate": "parallel"})
        lib.sample("mu", dist.Normal(lib.param("loc", jnp.array([0.5, 1.5]))[x], 0.5))

    return model, guide


def test_global_guide_enumeration_against_model_enumeration_is_numpyros() -> None:
    params = {"probs": jnp.array([0.1, 0.9]), "loc": jnp.array([0.5, 1.5])}
    y = jnp.array([1.0, 2.0, 0.5])
    ours, theirs = value_and_grads(mixture, params, y)
    assert_close(ours, theirs)


def local(lib: Any) -> tuple[Any, Any]:
    def model(y: Any) -> None:
        with lib.plate("data", 3):
            z = lib.sample("z", dist.Bernoulli(0.3))
            lib.sample("obs", dist.Normal(3.0 * z, 1.0), obs=y)

    def guide(y: Any) -> None:
        q = lib.param("q", jnp.full(3, 0.5), constraint=dist.constraints.unit_interval)
        with lib.plate("data", 3):
            lib.sample("z", dist.Bernoulli(q), infer={"enumerate": "parallel"})

    return model, guide


def test_local_guide_enumeration_is_numpyros_and_minus_the_evidence_at_the_posterior() -> None:
    y = jnp.array([1.0, 2.0, 0.5])
    params = {"q": jnp.array([0.1, 0.5, 0.9])}
    ours, theirs = value_and_grads(local, params, y)
    assert_close(ours, theirs)
    # At the exact posterior the ELBO is the log evidence (float64 NumPy reference).
    y64 = np.asarray(y, np.float64)
    lik1 = np.exp(-0.5 * (y64 - 3.0) ** 2) / np.sqrt(2 * np.pi)
    lik0 = np.exp(-0.5 * y64**2) / np.sqrt(2 * np.pi)
    evidence = 0.3 * lik1 + 0.7 * lik0
    posterior = {"q": jnp.asarray(0.3 * lik1 / evidence, jnp.float32)}
    model, guide = local(plait)
    loss = TraceEnum_ELBO().loss(random.key(0), posterior, model, guide, y)
    np.testing.assert_allclose(loss, -np.log(evidence).sum(), rtol=1e-5)


def test_max_plate_nesting_given_or_guessed_gives_the_same_loss() -> None:
    y = jnp.array([1.0, 2.0, 0.5])
    model, guide = local(plait)
    params = {"q": jnp.array([0.1, 0.5, 0.9])}
    guessed = TraceEnum_ELBO().loss(random.key(0), params, model, guide, y)
    given = TraceEnum_ELBO(max_plate_nesting=2).loss(random.key(0), params, model, guide, y)
    np.testing.assert_allclose(guessed, given, rtol=1e-6)


def local_mixture(lib: Any, with_loc: bool = True) -> tuple[Any, Any]:
    """The guide enumerates ``z`` inside the plate, the model enumerates ``w`` there."""

    def model(y: Any) -> None:
        loc = lib.sample("loc", dist.Normal(0.0, 2.0)) if with_loc else 0.0
        with lib.plate("data", 3):
            z = lib.sample("z", dist.Bernoulli(0.3))
            w = lib.sample("w", dist.Bernoulli(0.2 + 0.5 * z), infer={"enumerate": "parallel"})
            lib.sample("obs", dist.Normal(loc + 3.0 * w - z, 1.0), obs=y)

    def guide(y: Any) -> None:
        q = lib.param("q", jnp.full(3, 0.5), constraint=dist.constraints.unit_interval)
        if with_loc:
            lib.sample("loc", dist.Normal(lib.param("m", 0.5), 0.7))
        with lib.plate("data", 3):
            lib.sample("z", dist.Bernoulli(q), infer={"enumerate": "parallel"})

    return model, guide


def test_local_guide_enumeration_against_model_enumeration_is_numpyros() -> None:
    y = jnp.array([1.0, 2.0, 0.5])
    params = {"q": jnp.array([0.1, 0.5, 0.9]), "m": jnp.array(0.5)}
    ours, theirs = value_and_grads(local_mixture, params, y)
    assert_close(ours, theirs)


def nested(lib: Any) -> tuple[Any, Any]:
    """Guide enumeration of a global site and of a site in an outer plate; the model
    enumerates a site of the outer plate and one of both plates."""

    def model(y: Any) -> None:
        x = lib.sample("x", dist.Categorical(jnp.array([0.2, 0.5, 0.3])))
        outer, inner = lib.plate("outer", 3, dim=-1), lib.plate("inner", 2, dim=-2)
        with outer:
            z = lib.sample("z", dist.Bernoulli(0.3))
            w = lib.sample("w", dist.Bernoulli(0.2 + 0.5 * z), infer={"enumerate": "parallel"})
        with outer, inner:
            v = lib.sample("v", dist.Bernoulli(0.4 + 0.1 * w), infer={"enumerate": "parallel"})
            lib.sample("obs", dist.Normal(0.5 * x + 3.0 * w - z + v, 1.0), obs=y)

    def guide(y: Any) -> None:
        probs = lib.param("probs", jnp.array([0.3, 0.3, 0.4]), constraint=dist.constraints.simplex)
        q = lib.param("q", jnp.full(3, 0.5), constraint=dist.constraints.unit_interval)
        lib.sample("x", dist.Categorical(probs), infer={"enumerate": "parallel"})
        with lib.plate("outer", 3, dim=-1):
            lib.sample("z", dist.Bernoulli(q), infer={"enumerate": "parallel"})

    return model, guide


def test_guide_enumeration_in_nested_plates_against_model_enumeration_is_numpyros() -> None:
    y = jnp.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    params = {"probs": jnp.array([0.1, 0.6, 0.3]), "q": jnp.array([0.2, 0.5, 0.7])}
    ours, theirs = value_and_grads(nested, params, y)
    assert_close(ours, theirs)


def test_local_guide_enumeration_against_model_enumeration_is_the_brute_force_elbo() -> None:
    y = np.array([1.0, 2.0, 0.5])
    q = np.array([0.1, 0.5, 0.9])

    def normal(x: Any, mean: Any) -> Any:
        return np.exp(-0.5 * (x - mean) ** 2) / np.sqrt(2 * np.pi)

    # sum_i sum_z q_i(z) [log p(z) + log sum_w p(w | z) p(y_i | w, z) - log q_i(z)]
    expected = 0.0
    for i in range(3):
        for z, qz in ((0, 1 - q[i]), (1, q[i])):
            pw1 = 0.2 + 0.5 * z
            lik = (1 - pw1) * normal(y[i], -z) + pw1 * normal(y[i], 3.0 - z)
            expected += qz * (np.log(0.3 if z else 0.7) + np.log(lik) - np.log(qz))
    model, guide = local_mixture(plait, with_loc=False)
    params = {"q": jnp.asarray(q, jnp.float32)}
    loss = TraceEnum_ELBO().loss(random.key(0), params, model, guide, jnp.asarray(y))
    np.testing.assert_allclose(loss, -expected, rtol=1e-5)

    # Subsampling 3 of 6 points that are alike: the full-size ELBO, twice these three.
    def subsampled_model(y: Any) -> None:
        with plait.plate("data", 6, subsample_size=3):
            z = plait.sample("z", dist.Bernoulli(0.3))
            w = plait.sample("w", dist.Bernoulli(0.2 + 0.5 * z), infer={"enumerate": "parallel"})
            plait.sample("obs", dist.Normal(3.0 * w - z, 1.0), obs=y)

    def subsampled_guide(y: Any) -> None:
        with plait.plate("data", 6, subsample_size=3):
            plait.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})

    alike = jnp.full(3, float(y[0]))
    half = TraceEnum_ELBO().loss(random.key(0), {}, subsampled_model, subsampled_guide, alike)
    full = TraceEnum_ELBO().loss(random.key(0), {"q": jnp.full(3, 0.5)}, model, guide, alike)
    np.testing.assert_allclose(half, 2 * full, rtol=1e-5)


def test_a_global_model_site_meeting_a_local_guide_site_is_a_clear_error() -> None:
    def model() -> None:
        w = plait.sample("w", dist.Bernoulli(0.2), infer={"enumerate": "parallel"})
        with plait.plate("data", 3):
            plait.sample("z", dist.Bernoulli(0.3 + 0.5 * w))

    def guide() -> None:
        with plait.plate("data", 3):
            plait.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})

    with pytest.raises(ValueError, match=r"meet in a factor inside plates \['data'\]"):
        TraceEnum_ELBO().loss(random.key(0), {}, model, guide)
