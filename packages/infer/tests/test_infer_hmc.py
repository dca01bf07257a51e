"""HMC and NUTS: the initial state equals NumPyro's field for field, closed-form
posteriors are recovered (beside NumPyro's), and every NumPyro argument is honoured."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import numpyro.infer as numpyro_infer
import pytest
from jax import lax

import plait
from plait.infer import HMC, MCMC, NUTS, effective_sample_size, hmc, initialize_model

COV = jnp.array([[1.0, 0.95], [0.95, 1.0]])


def correlated(lib: Any) -> Any:
    def model() -> None:
        lib.sample("x", dist.MultivariateNormal(jnp.zeros(2), COV))
        lib.sample("s", dist.LogNormal(0.0, 1.0))

    return model


def init_state(lib: Any, kernel: Any, init_params: Any) -> Any:
    if lib is plait:
        kernel.prepare(jax.random.key(9), (), {})
    return kernel.init(jax.random.key(0), 100, init_params, (), {})


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"dense_mass": True, "step_size": 0.3},
        {"dense_mass": [("x",)], "target_accept_prob": 0.9},
        {
            "inverse_mass_matrix": {("x",): jnp.array([[2.0, 0.5], [0.5, 1.0]])},
            "dense_mass": [("x",)],
        },
        {"inverse_mass_matrix": jnp.array([3.0, 2.0, 1.0]), "adapt_mass_matrix": False},
        {"find_heuristic_step_size": True},
    ],
    ids=["default", "dense", "block", "given-block", "given-array", "heuristic"],
)
@pytest.mark.parametrize("kind", ["NUTS", "HMC"])
def test_initial_state_is_numpyros_field_for_field(settings: dict[str, Any], kind: str) -> None:
    ours_cls, theirs_cls = (
        (NUTS, numpyro_infer.NUTS) if kind == "NUTS" else (HMC, numpyro_infer.HMC)
    )
    z = {"x": jnp.array([0.3, -0.2]), "s": jnp.array(0.4)}
    ours = init_state(plait, ours_cls(correlated(plait), **settings), z)
    theirs = init_state(numpyro, theirs_cls(correlated(numpyro), **settings), z)
    assert ours._fields == theirs._fields
    for field in ours._fields:
        mine, numpyros = getattr(ours, field), getattr(theirs, field)
        if field == "rng_key":
            mine, numpyros = jax.random.key_data(mine), jax.random.key_data(numpyros)
        if field == "adapt_state":
            mine, numpyros = mine[:4], numpyros[:4]  # the step size and the mass matrices
        assert jax.tree.structure(mine) == jax.tree.structure(numpyros), field
        for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(numpyros), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, err_msg=field)


def beta_binomial(lib: Any) -> Any:
    def model(k: Any) -> None:
        p = lib.sample("p", dist.Beta(2.0, 3.0))
        lib.sample("k", dist.Binomial(20, p), obs=k)

    return model


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["NUTS", "HMC"])
def test_beta_binomial_posterior_is_recovered_beside_numpyro(kind: str) -> None:
    """Beta(2, 3) prior, 13 of 20: the posterior is Beta(15, 10)."""
    ours_cls, theirs_cls = (
        (NUTS, numpyro_infer.NUTS) if kind == "NUTS" else (HMC, numpyro_infer.HMC)
    )
    exact = dist.Beta(15.0, 10.0)
    draws = {}
    for lib, cls, mcmc_cls in ((plait, ours_cls, MCMC), (numpyro, theirs_cls, numpyro_infer.MCMC)):
        mcmc = mcmc_cls(
            cls(beta_binomial(lib)), num_warmup=300, num_samples=1000, progress_bar=False
        )
        mcmc.run(jax.random.key(1), jnp.array(13.0))
        draws[lib.__name__] = np.asarray(mcmc.get_samples(group_by_chain=True)["p"])
    errors = {
        name: float(jnp.sqrt(exact.variance)) / np.sqrt(effective_sample_size(d))
        for name, d in draws.items()
    }
    for name, d in draws.items():
        assert abs(d.mean() - float(exact.mean)) < 4 * errors[name], name
        np.testing.assert_allclose(
            d.std(), float(jnp.sqrt(exact.variance)), rtol=0.12, err_msg=name
        )
    combined = math.hypot(*errors.values())
    assert abs(draws["plait"].mean() - draws["numpyro"].mean()) < 4 * combined


@pytest.mark.slow
@pytest.mark.parametrize("dense_mass", [True, [("x",)]], ids=["dense", "block"])
def test_dense_mass_is_adapted_to_the_posterior_covariance(dense_mass: Any) -> None:
    mcmc = MCMC(
        NUTS(correlated(plait), dense_mass=dense_mass),
        num_warmup=400,
        num_samples=200,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(2))
    imm = mcmc.last_state.adapt_state.inverse_mass_matrix
    if dense_mass is True:
        assert set(imm) == {("s", "x")}  # NumPyro's layout: one block, sites sorted
        block = np.asarray(imm[("s", "x")])[1:, 1:]
    else:
        assert set(imm) == {("x",), ("s",)} and imm[("s",)].shape == (1,)
        block = np.asarray(imm[("x",)])
    np.testing.assert_allclose(block, COV, atol=0.25)
    assert float(mcmc.last_state.adapt_state.step_size) > 0.3  # a diagonal metric needs ~0.1


@pytest.mark.slow
def test_a_given_inverse_mass_matrix_is_kept_without_adaptation() -> None:
    given = {("x",): jnp.array([[2.0, 0.5], [0.5, 1.0]]), ("s",): jnp.array([0.5])}
    kernel = NUTS(
        correlated(plait), inverse_mass_matrix=given, dense_mass=[("x",)], adapt_mass_matrix=False
    )
    mcmc = MCMC(kernel, num_warmup=50, num_samples=20, progress_bar=False)
    mcmc.run(jax.random.key(3))
    imm = mcmc.last_state.adapt_state.inverse_mass_matrix
    for names, value in given.items():
        np.testing.assert_allclose(imm[names], value)


@pytest.mark.slow
def test_max_tree_depth_may_differ_between_warmup_and_sampling() -> None:
    mcmc = MCMC(
        NUTS(correlated(plait), max_tree_depth=(6, 2)),
        num_warmup=60,
        num_samples=30,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(4))
    assert int(np.max(mcmc.get_extra_fields()["num_steps"])) <= 3  # 2^2 - 1 leapfrog steps


@pytest.mark.slow
def test_target_accept_prob_sets_the_step_size() -> None:
    sizes = []
    for target in (0.6, 0.95):
        mcmc = MCMC(
            NUTS(correlated(plait), target_accept_prob=target),
            num_warmup=200,
            num_samples=10,
            progress_bar=False,
        )
        mcmc.run(jax.random.key(5))
        sizes.append(float(mcmc.last_state.adapt_state.step_size))
    assert sizes[1] < 0.7 * sizes[0]


@pytest.mark.slow
def test_forward_mode_differentiation_samples_a_model_with_a_while_loop() -> None:
    def model() -> None:
        x = plait.sample("x", dist.Normal(0.0, 1.0))
        # x * 2 by a while loop: reverse-mode differentiation of it is not defined
        doubled = lax.while_loop(lambda c: c[0] < 2, lambda c: (c[0] + 1, c[1] + x), (0, 0.0))[1]
        plait.sample("y", dist.Normal(doubled, 1.0), obs=1.0)

    with pytest.raises(ValueError, match="Reverse-mode differentiation does not work"):
        MCMC(NUTS(model), num_warmup=2, num_samples=2, progress_bar=False).run(jax.random.key(0))
    mcmc = MCMC(
        NUTS(model, forward_mode_differentiation=True),
        num_warmup=200,
        num_samples=600,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0))
    # x ~ N(0, 1), 1 ~ N(2x, 1): the posterior of x is N(2/5, 1/5)
    draws = np.asarray(mcmc.get_samples()["x"])
    assert abs(draws.mean() - 0.4) < 0.1 and abs(draws.var() - 0.2) < 0.06


@pytest.mark.slow
def test_hmc_trajectory_length_sets_the_number_of_steps() -> None:
    mcmc = MCMC(
        HMC(correlated(plait), trajectory_length=1.0),
        num_warmup=100,
        num_samples=10,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(6), extra_fields=("adapt_state.step_size",))
    extra = mcmc.get_extra_fields()
    np.testing.assert_array_equal(extra["num_steps"], np.ceil(1.0 / extra["adapt_state.step_size"]))


@pytest.mark.slow
def test_the_functional_interface_samples_a_potential() -> None:
    def model() -> None:
        plait.sample("mu", dist.Normal(1.0, 0.5))

    info = initialize_model(jax.random.key(0), model)
    init_kernel, sample_kernel = hmc(info.potential_fn, algo="NUTS")
    state = init_kernel(info.param_info, num_warmup=100, rng_key=jax.random.key(1))

    def step(state: Any, _: Any) -> Any:
        state = sample_kernel(state)
        return state, state.z["mu"]

    _, draws = jax.jit(lambda s: lax.scan(step, s, None, length=600))(state)
    draws = np.asarray(draws[100:])
    assert abs(draws.mean() - 1.0) < 0.1 and abs(draws.std() - 0.5) < 0.08
