"""Reparameterisers against NumPyro's (same draws and log densities), inside ``scan`` as on
the unrolled loop, and NeuTra's change-of-variables identity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import numpyro.infer.reparam as numpyro_reparam
import optax
import pytest
from jax import random
from numpyro.distributions.transforms import AffineTransform, ExpTransform

import plait
import plait.infer.reparam as reparams
from plait.handlers import reparam, seed, substitute, trace
from plait.infer import SVI, Trace_ELBO, log_density, potential_energy
from plait.infer.autoguide import AutoDiagonalNormal

CASES: dict[str, tuple[Callable[[], Any], dict[str, Any], dict[str, Any]]] = {
    # name: (distribution, constructor options, values substituted, for improper draws)
    "TransformReparam": (
        lambda: dist.TransformedDistribution(
            dist.Normal(0.0, 1.0), [AffineTransform(1.0, 2.0), ExpTransform()]
        ),
        {},
        {},
    ),
    "ExplicitReparam": (
        lambda: dist.Gamma(4.0, 4.0),
        {"transform": dist.transforms.SoftplusTransform().inv},
        {},
    ),
    "CircularReparam": (lambda: dist.VonMises(0.5, 2.0), {}, {"x_unwrapped": 3.5}),
    "ProjectedNormalReparam": (lambda: dist.ProjectedNormal(jnp.array([1.0, 0.5, 0.0])), {}, {}),
    "HaarReparam": (lambda: dist.Normal(0.0, 1.0).expand([6]).to_event(1), {}, {}),
    "DiscreteCosineReparam": (
        lambda: dist.Normal(0.0, 1.0).expand([6]).to_event(1),
        {"smooth": 1.0},
        {},
    ),
    "LocScaleReparam": (lambda: dist.Normal(1.0, 2.0), {"centered": 0.0}, {}),
}


def one_site(lib: Any, make: Callable[[], Any], values: dict[str, Any]) -> Callable[[], Any]:
    def model() -> Any:
        return lib.sample("x", make())

    return lib.handlers.substitute(model, data=values) if values else model


@pytest.mark.parametrize("name", sorted(CASES))
def test_reparam_draws_and_scores_as_numpyro(name: str) -> None:
    make, options, values = CASES[name]
    ours_model = reparam(
        one_site(plait, make, values), config={"x": getattr(reparams, name)(**options)}
    )
    theirs_model = numpyro.handlers.reparam(
        one_site(numpyro, make, values), config={"x": getattr(numpyro_reparam, name)(**options)}
    )
    ours = trace(seed(ours_model, 0)).get_trace()
    theirs = numpyro.handlers.trace(numpyro.handlers.seed(theirs_model, 0)).get_trace()
    assert list(ours) == list(theirs)
    assert ours["x"].type == "deterministic"
    for site in theirs:
        np.testing.assert_allclose(ours[site].value, theirs[site]["value"], rtol=1e-6)
    latents = {
        k: v["value"] for k, v in theirs.items() if v["type"] == "sample" and not v["is_observed"]
    }
    np.testing.assert_allclose(
        log_density(ours_model, (), {}, latents)[0],
        numpyro.infer.util.log_density(theirs_model, (), {}, latents)[0],
        rtol=1e-6,
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_reparam_inside_scan_is_the_unrolled_loop(name: str) -> None:
    scan = pytest.importorskip("plait.control_flow").scan
    make, options, values = CASES[name]
    length = 3

    def looped() -> Any:
        def step(carry: Any, _: Any) -> tuple[Any, Any]:
            return carry, plait.sample("x", make())

        return scan(step, 0.0, None, length=length)[1]

    def unrolled() -> Any:
        return jnp.stack([plait.sample(f"x{t}", make()) for t in range(length)])

    config_loop = {"x": getattr(reparams, name)(**options)}
    config_unrolled = {f"x{t}": getattr(reparams, name)(**options) for t in range(length)}
    loop_model = reparam(looped, config=config_loop)
    unrolled_model = reparam(unrolled, config=config_unrolled)
    if values:  # an improper auxiliary site: substitute values instead of drawing them
        aux = {f"x{t}_unwrapped": jnp.asarray(3.5 - t) for t in range(length)}
    else:
        aux = {
            n: s.value
            for n, s in trace(seed(unrolled_model, 1)).get_trace().items()
            if s.type == "sample" and not s.is_observed
        }
    # The same auxiliary values, stacked over time for the loop ("x0_base" -> "x_base").
    suffixes = [n[len("x0") :] for n in aux if n.startswith("x0")]
    stacked = {f"x{sfx}": jnp.stack([aux[f"x{t}{sfx}"] for t in range(length)]) for sfx in suffixes}
    loop_value = substitute(loop_model, data=stacked)()
    unrolled_value = substitute(unrolled_model, data=aux)()
    np.testing.assert_allclose(loop_value, unrolled_value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        log_density(loop_model, (), {}, stacked)[0],
        log_density(unrolled_model, (), {}, aux)[0],
        rtol=1e-5,
    )
    tr = trace(substitute(loop_model, data=stacked)).get_trace()
    assert tr["x"].type == "deterministic" and tr["x"].value.shape[0] == length


@pytest.mark.parametrize("name", ["CircularReparam", "HaarReparam", "TransformReparam"])
def test_reparam_of_an_observed_site_is_an_assertion_error(name: str) -> None:
    make, options, _ = CASES[name]
    value = make().sample(random.key(0))

    def model() -> None:
        plait.sample("x", make(), obs=value)

    with pytest.raises(AssertionError, match="not support observe") as info:
        seed(reparam(model, config={"x": getattr(reparams, name)(**options)}), 0)()
    assert isinstance(info.value, ValueError)


def funnel(lib: Any) -> Callable[[int], None]:
    def model(dim: int) -> None:
        y = lib.sample("y", dist.Normal(0.0, 3.0))
        with lib.plate("D", dim):
            lib.sample("x", dist.Normal(0.0, jnp.exp(y / 2)))

    return model


def test_neutra_potential_is_the_model_potential_at_the_warped_point() -> None:
    model = funnel(plait)
    guide = AutoDiagonalNormal(model)
    svi = SVI(model, guide, optax.adam(1e-3), Trace_ELBO())
    params = svi.get_params(svi.init(random.key(0), 4))
    params = {**params, "auto_scale": params["auto_scale"] + jnp.arange(5.0) / 10}
    neutra = reparams.NeuTraReparam(guide, params)
    z = random.normal(random.key(1), (5,))
    warped = potential_energy(neutra.reparam(model), (4,), {}, {"auto_shared_latent": z})
    x = neutra.transform(z)
    plain = potential_energy(model, (4,), {}, guide._unpack_latent(x))
    expected = plain - neutra.transform.log_abs_det_jacobian(z, x)
    np.testing.assert_allclose(warped, expected, rtol=1e-5)
    samples = neutra.transform_sample(jnp.stack([z, -z]))
    assert samples["x"].shape == (2, 4) and samples["y"].shape == (2,)


def test_neutra_draws_as_numpyro() -> None:
    results = []
    for lib, auto, neutra_cls, svi_cls, elbo in (
        (plait, AutoDiagonalNormal, reparams.NeuTraReparam, SVI, Trace_ELBO),
        (
            numpyro,
            numpyro.infer.autoguide.AutoDiagonalNormal,
            numpyro_reparam.NeuTraReparam,
            numpyro.infer.SVI,
            numpyro.infer.Trace_ELBO,
        ),
    ):
        model = funnel(lib)
        guide = auto(model)
        svi = svi_cls(model, guide, optax.adam(1e-3), elbo())
        neutra = neutra_cls(guide, svi.get_params(svi.init(random.key(0), 3)))
        tr = lib.handlers.trace(lib.handlers.seed(neutra.reparam(model), 2)).get_trace(3)
        results.append({k: (v.value if lib is plait else v["value"]) for k, v in tr.items()})
    ours, theirs = results
    assert list(ours) == list(theirs)
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5)


def walks(length: int, latent_after: bool) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """A random walk with a scale latent, as a ``scan`` and unrolled (sites ``x0``,
    ``x1``, ...): the same latents, in the same order. ``latent_after`` puts the
    scale's site after the loop (the shared latent is then drawn before the loop)."""
    scan = pytest.importorskip("plait.control_flow").scan

    def looped() -> Any:
        s = None if latent_after else plait.sample("s", dist.HalfNormal(1.0))

        def step(carry: Any, _: Any) -> tuple[Any, Any]:
            x = plait.sample("x", dist.Normal(carry, 1.0 if s is None else s))
            plait.sample("y", dist.Normal(x, 0.5), obs=0.3)
            return x, x

        _, xs = scan(step, jnp.zeros(()), None, length=length)
        if latent_after:
            plait.sample("s", dist.HalfNormal(1.0 + xs[-1] ** 2))
        return xs

    def unrolled() -> Any:
        s = None if latent_after else plait.sample("s", dist.HalfNormal(1.0))
        carry, xs = jnp.zeros(()), []
        for t in range(length):
            carry = plait.sample(f"x{t}", dist.Normal(carry, 1.0 if s is None else s))
            plait.sample(f"y{t}", dist.Normal(carry, 0.5), obs=0.3)
            xs.append(carry)
        if latent_after:
            plait.sample("s", dist.HalfNormal(1.0 + xs[-1] ** 2))
        return jnp.stack(xs)

    return looped, unrolled


@pytest.mark.parametrize("latent_after", [False, True])
@pytest.mark.parametrize("auto", ["AutoDiagonalNormal", "AutoMultivariateNormal"])
def test_neutra_inside_scan_is_neutra_on_the_unrolled_loop(auto: str, latent_after: bool) -> None:
    import plait.infer.autoguide as autoguide

    length = 3
    looped, unrolled = walks(length, latent_after)
    neutras, dim = [], length + 1
    # Params that mix the latent's dims (a full scale_tril), the same for both models.
    loc = jnp.linspace(-0.5, 0.5, dim)
    tril = jnp.tril(0.2 * random.normal(random.key(3), (dim, dim)), -1) + jnp.diag(
        jnp.linspace(0.5, 1.5, dim)
    )
    for model in (looped, unrolled):
        guide = getattr(autoguide, auto)(model)
        svi = SVI(model, guide, optax.adam(1e-3), Trace_ELBO())
        params = svi.get_params(svi.init(random.key(0)))
        params = {**params, "auto_loc": loc}
        if auto == "AutoDiagonalNormal":
            params["auto_scale"] = jnp.diag(tril)
        else:
            params["auto_scale_tril"] = tril
        neutras.append(reparams.NeuTraReparam(guide, params))
    loop_neutra, unrolled_neutra = neutras
    z = random.normal(random.key(1), (dim,))
    latent = {"auto_shared_latent": z}
    loop_model, unrolled_model = loop_neutra.reparam(looped), unrolled_neutra.reparam(unrolled)
    # The log density and its gradient in z, against the unrolled loop's.
    loop_pe = jax.value_and_grad(lambda v: potential_energy(loop_model, (), {}, v))(latent)
    unrolled_pe = jax.value_and_grad(lambda v: potential_energy(unrolled_model, (), {}, v))(latent)
    np.testing.assert_allclose(loop_pe[0], unrolled_pe[0], rtol=1e-5)
    np.testing.assert_allclose(
        loop_pe[1]["auto_shared_latent"], unrolled_pe[1]["auto_shared_latent"], rtol=1e-4
    )
    # ... and against the change of variables: the model's potential at x = T(z).
    x = loop_neutra.transform(z)
    plain = potential_energy(looped, (), {}, loop_neutra.guide._unpack_latent(x))
    expected = plain - loop_neutra.transform.log_abs_det_jacobian(z, x)
    np.testing.assert_allclose(loop_pe[0], expected, rtol=1e-5)
    # The pushed-forward draw: the loop's deterministic sites are the unrolled ones.
    loop_tr = trace(substitute(seed(loop_model, 0), data=latent)).get_trace()
    unrolled_tr = trace(substitute(seed(unrolled_model, 0), data=latent)).get_trace()
    assert loop_tr["x"].type == "deterministic"
    assert loop_tr["_x_log_prob"].value is not None
    stacked = jnp.stack([unrolled_tr[f"x{t}"].value for t in range(length)])
    np.testing.assert_allclose(loop_tr["x"].value, stacked, rtol=1e-6)
    np.testing.assert_allclose(loop_tr["s"].value, unrolled_tr["s"].value, rtol=1e-6)
    samples = loop_neutra.transform_sample(jnp.stack([z, -z]))
    np.testing.assert_allclose(samples["x"][0], stacked, rtol=1e-6)
    # A second run of the same handler draws afresh (its state is per run).
    again = trace(seed(loop_model, 1)).get_trace()
    assert again["auto_shared_latent"].value.shape == (dim,)


def test_neutra_refuses_a_scan_site_without_its_handler() -> None:
    looped, _ = walks(3, latent_after=False)
    guide = AutoDiagonalNormal(looped)
    svi = SVI(looped, guide, optax.adam(1e-3), Trace_ELBO())
    neutra = reparams.NeuTraReparam(guide, svi.get_params(svi.init(random.key(0))))
    with pytest.raises(ValueError, match=r"only under NeuTraReparam\.reparam"):
        seed(reparam(looped, config=neutra._reparam_config), 0)()


def test_neutra_needs_an_autocontinuous_guide() -> None:
    with pytest.raises(TypeError, match="AutoContinuous"):
        reparams.NeuTraReparam(lambda: None, {})  # type: ignore[arg-type]


def test_reparam_is_numpyros_base_with_unwrap_and_wrap() -> None:
    assert issubclass(reparams.TransformReparam, reparams.Reparam)
    assert reparams.LocScaleReparam is plait.handlers.LocScaleReparam
    fn = dist.Normal(0.0, 1.0).expand([3, 2]).to_event(1)
    base, shape, event_dim = reparams.Reparam()._unwrap(fn)
    wrapped = reparams.Reparam()._wrap(base, shape, event_dim)
    assert wrapped.batch_shape == fn.batch_shape and wrapped.event_shape == fn.event_shape
