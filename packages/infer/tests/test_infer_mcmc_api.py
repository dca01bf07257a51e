"""MCMC's API as NumPyro's: collection and thinning (against NumPyro's MCMC on the same
deterministic kernel), resuming, warm-up, extra fields, compile reuse, models that read
concrete values, and models without a continuous latent."""

from __future__ import annotations

import re
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import numpyro.infer as numpyro_infer
import pytest
from numpyro.infer.mcmc import MCMCKernel as NumPyroKernel

import plait
from plait.infer import HMC, MCMC, NUTS, MCMCKernel

Y = jnp.array([1.2, 0.4, 2.1, 1.7, 0.9, 1.3, 1.8, 0.6, 1.1, 1.5])


class CountState(NamedTuple):
    x: Any
    i: Any
    rng_key: Any


def _count_init(rng_key: Any, init_params: Any) -> CountState:
    x = {"a": jnp.zeros(()), "b": jnp.zeros(2)} if init_params is None else init_params
    return CountState(x, jnp.zeros((), jnp.int32), rng_key)


def _count_sample(state: CountState) -> CountState:
    key, sub = jax.random.split(state.rng_key)
    noise = jax.random.uniform(sub)
    x = {"a": state.x["a"] + 1.0 + 0.0 * noise, "b": state.x["b"] + 2.0}
    return CountState(x, state.i + 1, key)


class PlaitCounter(MCMCKernel[CountState]):
    sample_field = "x"

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):  # type: ignore[no-untyped-def]
        return _count_init(rng_key, init_params)

    def sample(self, state, model_args, model_kwargs):  # type: ignore[no-untyped-def]
        return _count_sample(state)


class NumPyroCounter(NumPyroKernel):  # type: ignore[misc]
    """The same kernel for NumPyro, whose kernels vectorise chains themselves."""

    sample_field = "x"
    batched = False

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):  # type: ignore[no-untyped-def]
        self.batched = jnp.ndim(rng_key) > 0
        if self.batched:
            return jax.vmap(_count_init, (0, None))(rng_key, init_params)
        return _count_init(rng_key, init_params)

    def sample(self, state, model_args, model_kwargs):  # type: ignore[no-untyped-def]
        return jax.vmap(_count_sample)(state) if self.batched else _count_sample(state)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("num_warmup", "num_samples", "thinning", "num_chains"),
    [(3, 10, 1, 1), (3, 10, 3, 1), (0, 7, 2, 2), (5, 12, 4, 2)],
)
@pytest.mark.parametrize("progress_bar", [False, True])
def test_collected_draws_and_fields_are_numpyros(
    num_warmup: int, num_samples: int, thinning: int, num_chains: int, progress_bar: bool
) -> None:
    kwargs = {
        "num_warmup": num_warmup,
        "num_samples": num_samples,
        "thinning": thinning,
        "num_chains": num_chains,
        "chain_method": "vectorized",
    }
    ours = MCMC(PlaitCounter(), progress_bar=progress_bar, progress_rate=2, **kwargs)  # type: ignore[arg-type]
    theirs = numpyro_infer.MCMC(NumPyroCounter(), progress_bar=False, **kwargs)
    extra = ("i", "~x.b")
    ours.run(jax.random.key(0), extra_fields=extra)
    theirs.run(jax.random.key(0), extra_fields=extra)
    for group in (False, True):
        a, b = ours.get_samples(group_by_chain=group), theirs.get_samples(group_by_chain=group)
        assert set(a) == set(b) == {"a"}
        np.testing.assert_array_equal(a["a"], b["a"])
        np.testing.assert_array_equal(
            ours.get_extra_fields(group)["i"], theirs.get_extra_fields(group)["i"]
        )
    last_ours, last_theirs = ours.last_state, theirs.last_state
    np.testing.assert_array_equal(last_ours.i, last_theirs.i)
    np.testing.assert_array_equal(
        jax.random.key_data(last_ours.rng_key), jax.random.key_data(last_theirs.rng_key)
    )


@pytest.mark.slow
def test_warmup_then_run_is_numpyros_with_collect_warmup() -> None:
    ours = MCMC(PlaitCounter(), num_warmup=4, num_samples=6, progress_bar=False)
    theirs = numpyro_infer.MCMC(NumPyroCounter(), num_warmup=4, num_samples=6, progress_bar=False)
    for mcmc in (ours, theirs):
        mcmc.warmup(jax.random.key(0), collect_warmup=True)
    np.testing.assert_array_equal(ours.get_samples()["a"], theirs.get_samples()["a"])
    assert int(ours.post_warmup_state.i) == 4
    for mcmc in (ours, theirs):
        mcmc.run(jax.random.key(1))
    np.testing.assert_array_equal(ours.get_samples()["a"], theirs.get_samples()["a"])
    np.testing.assert_array_equal(ours.get_samples()["a"], np.arange(5.0, 11.0))


def conjugate(y: Any) -> None:
    mu = plait.sample("mu", dist.Normal(0.0, 2.0))
    with plait.plate("data", y.shape[0]):
        plait.sample("y", dist.Normal(mu, 1.0), obs=y)


@pytest.mark.slow
@pytest.mark.parametrize("num_chains", [1, 2])
def test_a_run_resumed_from_last_state_is_one_long_run(num_chains: int) -> None:
    settings = {"num_chains": num_chains, "chain_method": "vectorized", "progress_bar": False}
    long = MCMC(NUTS(conjugate), num_warmup=30, num_samples=40, **settings)  # type: ignore[arg-type]
    long.run(jax.random.key(3), Y)
    short = MCMC(NUTS(conjugate), num_warmup=30, num_samples=20, **settings)  # type: ignore[arg-type]
    short.run(jax.random.key(3), Y)
    first = short.get_samples(group_by_chain=True)["mu"]
    short.post_warmup_state = short.last_state
    short.run(short.last_state.rng_key, Y)
    second = short.get_samples(group_by_chain=True)["mu"]
    np.testing.assert_array_equal(
        np.concatenate([first, second], axis=1), long.get_samples(group_by_chain=True)["mu"]
    )
    # resuming does not warm up again: the step size stays the adapted one
    steps = short.get_extra_fields()  # default fields only
    assert "adapt_state.step_size" not in steps


@pytest.mark.slow
def test_warmup_sets_post_warmup_state_and_run_samples_with_its_step_size() -> None:
    mcmc = MCMC(NUTS(conjugate), num_warmup=40, num_samples=15, progress_bar=False)
    mcmc.warmup(jax.random.key(0), Y)
    step = float(mcmc.post_warmup_state.adapt_state.step_size)
    mcmc.run(jax.random.key(1), Y, extra_fields=("adapt_state.step_size", "i", "z.mu"))
    extra = mcmc.get_extra_fields()
    np.testing.assert_allclose(extra["adapt_state.step_size"], step)
    np.testing.assert_array_equal(extra["i"], np.arange(41, 56))
    np.testing.assert_allclose(extra["z.mu"], mcmc.get_samples()["mu"])


@pytest.mark.slow
def test_second_run_on_new_data_of_the_same_shape_compiles_nothing(count_compiles: Any) -> None:
    mcmc = MCMC(NUTS(conjugate), num_warmup=20, num_samples=20, progress_bar=False)
    mcmc.run(jax.random.key(0), Y)
    shifted = Y + 10.0
    with count_compiles() as compiles:
        mcmc.run(jax.random.key(0), shifted)
    assert len(compiles) == 0
    assert float(mcmc.get_samples()["mu"].mean()) > 8.0


def needs_concrete_data(y: Any) -> None:
    k = int(np.max(y)) + 1  # NumPyro's annotation example reads its data this way
    probs = plait.sample("probs", dist.Dirichlet(jnp.ones(k)))
    with plait.plate("n", y.shape[0]):
        plait.sample("y", dist.Categorical(probs), obs=y)


@pytest.mark.slow
def test_a_model_reading_concrete_values_of_its_data_runs(count_compiles: Any) -> None:
    counts = np.array([0, 1, 2, 2, 1, 2])
    mcmc = MCMC(NUTS(needs_concrete_data), num_warmup=100, num_samples=200, progress_bar=False)
    mcmc.run(jax.random.key(0), counts)
    # Dirichlet(1, 1, 1) and counts (1, 2, 3): posterior mean (2, 3, 4) / 9
    np.testing.assert_allclose(
        mcmc.get_samples()["probs"].mean(0), np.array([2, 3, 4]) / 9, atol=0.06
    )
    with count_compiles() as compiles:
        mcmc.run(jax.random.key(1), counts.copy())  # equal data: the programs are reused
    assert len(compiles) == 0
    mcmc.run(jax.random.key(1), np.array([0, 1, 1, 1, 3]))  # k = 4: compiled again
    assert mcmc.get_samples()["probs"].shape == (200, 4)


@pytest.mark.slow
def test_jit_model_args_refuses_a_model_that_needs_concrete_values() -> None:
    mcmc = MCMC(
        NUTS(needs_concrete_data),
        num_warmup=5,
        num_samples=5,
        progress_bar=False,
        jit_model_args=True,
    )
    with pytest.raises(jax.errors.ConcretizationTypeError):
        mcmc.run(jax.random.key(0), np.array([0, 1, 2]))


@pytest.mark.slow
def test_models_without_a_continuous_latent_run() -> None:
    def deterministic_only(y: Any) -> None:
        plait.deterministic("mean", jnp.mean(y))

    weights = jnp.array([0.3, 0.7])

    def enumerated_only(y: Any) -> None:
        with plait.plate("data", y.shape[0]):
            z = plait.sample("z", dist.Categorical(weights), infer={"enumerate": "parallel"})
            plait.sample("y", dist.Normal(jnp.where(z == 1, 1.0, -1.0), 1.0), obs=y)

    for model in (deterministic_only, enumerated_only):
        mcmc = MCMC(NUTS(model), num_warmup=5, num_samples=7, progress_bar=False)
        mcmc.run(jax.random.key(0), Y)
        assert mcmc.get_extra_fields()["diverging"].shape == (7,)
    np.testing.assert_allclose(MCMC_samples(deterministic_only)["mean"], jnp.mean(Y))


def MCMC_samples(model: Any) -> dict[str, Any]:
    mcmc = MCMC(NUTS(model), num_warmup=2, num_samples=3, progress_bar=False)
    mcmc.run(jax.random.key(0), Y)
    samples: dict[str, Any] = mcmc.get_samples()
    return samples


@pytest.mark.slow
def test_deterministic_site_of_an_enumerated_latent_carries_the_support_as_numpyro() -> None:
    y = jnp.array([-1.1, 2.2, 1.8])

    def make(lib: Any) -> Any:
        def mixture(y: Any) -> None:
            loc = lib.sample("loc", dist.Normal(0.0, 3.0))
            with lib.plate("data", y.shape[0]):
                z = lib.sample(
                    "z", dist.Categorical(jnp.array([0.3, 0.7])), infer={"enumerate": "parallel"}
                )
                d = lib.deterministic("d", jnp.where(z == 1, loc, -1.0))
                lib.sample("y", dist.Normal(d, 1.0), obs=y)

        return mixture

    ours = MCMC(NUTS(make(plait)), num_warmup=20, num_samples=10, progress_bar=False)
    ours.run(jax.random.key(0), y)
    theirs = numpyro_infer.MCMC(
        numpyro_infer.NUTS(make(numpyro)), num_warmup=20, num_samples=10, progress_bar=False
    )
    theirs.run(jax.random.key(0), y)
    samples = ours.get_samples()
    assert samples["d"].shape == theirs.get_samples()["d"].shape == (10, 2, 1)
    # the enumerated support, not a value at one prior draw of z
    np.testing.assert_allclose(samples["d"][:, 0, 0], -1.0)
    np.testing.assert_allclose(samples["d"][:, 1, 0], samples["loc"])


@pytest.mark.slow
def test_unmarked_discrete_latent_is_enumerated_with_numpyros_warning() -> None:
    def coin(y: Any) -> None:
        loc = plait.sample("loc", dist.Normal(0.0, 3.0))
        with plait.plate("data", y.shape[0]):
            c = plait.sample("c", dist.Bernoulli(0.3))
            plait.sample("y", dist.Normal(jnp.where(c == 1, loc, -1.0), 1.0), obs=y)

    mcmc = MCMC(NUTS(coin), num_warmup=30, num_samples=30, progress_bar=False)
    with pytest.warns(
        FutureWarning, match=re.escape("automatically enumerate the discrete latent site c")
    ):
        mcmc.run(jax.random.key(0), Y)
    assert set(mcmc.get_samples()) == {"loc"}


@pytest.mark.slow
def test_a_start_outside_the_support_is_searched_again() -> None:
    """Only one start in eight is finite: the compiled one-attempt init fails for most
    keys and check_init searches again."""

    def narrow() -> None:
        x = plait.sample("x", dist.Normal(0.0, 1.0))
        plait.factor("inside", jnp.where(x > 1.5, 0.0, -jnp.inf))

    mcmc = MCMC(
        NUTS(narrow),
        num_warmup=10,
        num_samples=10,
        num_chains=3,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0))
    assert bool(jnp.all(mcmc.get_samples()["x"] > 1.5))


@pytest.mark.slow
def test_print_summary_takes_prob(capsys: pytest.CaptureFixture[str]) -> None:
    # NumPyro's positional order: model, potential_fn, kinetic_fn, step_size, ...
    mcmc = MCMC(NUTS(conjugate, None, None, 0.5), num_warmup=20, num_samples=20, progress_bar=False)
    mcmc.run(jax.random.key(0), Y)
    mcmc.print_summary(prob=0.5)
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header == ["mean", "std", "median", "25.0%", "75.0%", "n_eff", "r_hat"]


@pytest.mark.slow
def test_parallel_chains_on_one_device_run_in_turn_with_numpyros_warning() -> None:
    if jax.local_device_count() >= 2:
        pytest.skip("needs a single device")
    with pytest.warns(UserWarning, match="Chains will be drawn sequentially"):
        mcmc = MCMC(NUTS(conjugate), num_warmup=5, num_samples=5, num_chains=2, progress_bar=False)
    assert mcmc.chain_method == "sequential"


@pytest.mark.slow
def test_a_kernel_on_a_potential_needs_init_params_and_samples_it() -> None:
    def potential(z: Any) -> Any:
        return 0.5 * jnp.sum((z - 3.0) ** 2)

    with pytest.raises(ValueError, match="init_params"):
        MCMC(
            HMC(potential_fn=potential, num_steps=4, trajectory_length=None),
            num_warmup=2,
            num_samples=2,
            progress_bar=False,
        ).run(jax.random.key(0))
    mcmc = MCMC(NUTS(potential_fn=potential), num_warmup=200, num_samples=400, progress_bar=False)
    mcmc.run(jax.random.key(0), init_params=jnp.zeros(2))
    draws = mcmc.get_samples()
    assert draws.shape == (400, 2)
    np.testing.assert_allclose(draws.mean(0), 3.0, atol=0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mcmc.print_summary()


def test_nuts_and_hmc_take_numpyros_positional_arguments() -> None:
    import inspect

    for ours, theirs in ((NUTS, numpyro_infer.NUTS), (HMC, numpyro_infer.HMC)):
        assert list(inspect.signature(ours).parameters) == list(
            inspect.signature(theirs).parameters
        )
