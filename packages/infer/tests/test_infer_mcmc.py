"""MCMC with NUTS: posterior recovery, chain methods, caching, results and errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import plait
from plait.errors import SiteError
from plait.infer import MCMC, NUTS, effective_sample_size, initialize_model

pytestmark = pytest.mark.slow  # MCMC runs (deselect with -m "not slow")

Y = jnp.array([1.2, 0.4, 2.1, 1.7, 0.9, 1.3, 1.8, 0.6, 1.1, 1.5])
COUNTS = jnp.array([3.0, 5.0, 2.0, 4.0, 6.0])
PRIOR_SD = 2.0
SHAPE, RATE = 2.0, 0.5


def conjugate(y: Any, counts: Any) -> None:
    mu = plait.sample("mu", dist.Normal(0.0, PRIOR_SD))
    rate = plait.sample("rate", dist.Gamma(SHAPE, RATE))
    plait.deterministic("mu_plus_rate", mu + rate)
    with plait.plate("data", y.shape[0]):
        plait.sample("y", dist.Normal(mu, 1.0), obs=y)
    with plait.plate("n_counts", counts.shape[0]):
        plait.sample("counts", dist.Poisson(rate), obs=counts)


def exact() -> dict[str, tuple[float, float]]:
    precision = 1.0 / PRIOR_SD**2 + Y.shape[0]
    shape, rate = SHAPE + float(COUNTS.sum()), RATE + COUNTS.shape[0]
    return {
        "mu": (float(Y.sum()) / precision, precision**-0.5),
        "rate": (shape / rate, shape**0.5 / rate),
    }


@pytest.fixture(scope="module")
def fitted() -> MCMC:
    # Sequential chains compile one unbatched program (a vmapped NUTS compiles slower);
    # the vectorised path is compared with it below.
    mcmc = MCMC(
        NUTS(conjugate),
        num_warmup=300,
        num_samples=500,
        num_chains=2,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), Y, COUNTS)
    return mcmc


SHORT_RUN = {"num_warmup": 15, "num_samples": 10, "num_chains": 2, "progress_bar": False}


@pytest.fixture(scope="module")
def short_sequential() -> np.ndarray:
    """Draws of ``mu`` of a short sequential run, to compare other chain methods with.

    Short: programs compiled differently round differently, which a long run (a chaotic
    map) amplifies."""
    mcmc = MCMC(NUTS(conjugate), chain_method="sequential", **SHORT_RUN)  # type: ignore[arg-type]
    mcmc.run(jax.random.key(0), Y, COUNTS)
    return np.asarray(mcmc.get_samples(group_by_chain=True)["mu"])


def test_nuts_recovers_the_exact_conjugate_posterior(fitted: MCMC) -> None:
    grouped = fitted.get_samples(group_by_chain=True)
    for name, (mean, sd) in exact().items():
        draws = np.asarray(grouped[name])
        standard_error = sd / np.sqrt(effective_sample_size(draws))
        assert abs(draws.mean() - mean) < 4 * standard_error, name
        np.testing.assert_allclose(draws.std(), sd, rtol=0.15, err_msg=name)


def test_samples_are_constrained_grouped_and_include_deterministic_sites(fitted: MCMC) -> None:
    flat = fitted.get_samples()
    grouped = fitted.get_samples(group_by_chain=True)
    assert set(flat) == {"mu", "rate", "mu_plus_rate"}
    assert flat["mu"].shape == (1000,) and grouped["mu"].shape == (2, 500)
    assert bool(jnp.all(flat["rate"] > 0))
    np.testing.assert_allclose(flat["mu_plus_rate"], flat["mu"] + flat["rate"], rtol=1e-5)
    extra = fitted.get_extra_fields(group_by_chain=True)
    assert set(extra) == {"potential_energy", "diverging", "accept_prob", "num_steps"}
    assert extra["diverging"].shape == (2, 500) and not extra["diverging"].any()
    assert 0.6 < extra["accept_prob"].mean() < 0.97


def test_print_summary_shows_rhat_and_ess_per_latent(
    fitted: MCMC, capsys: pytest.CaptureFixture[str]
) -> None:
    fitted.print_summary()
    out = capsys.readouterr().out
    assert "n_eff" in out and "r_hat" in out and "Number of divergences: 0" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip()}
    assert set(rows) >= {"mu", "rate"} and "mu_plus_rate" not in rows
    assert abs(float(rows["mu"][-1]) - 1.0) < 0.05


def test_to_arviz_returns_inference_data(fitted: MCMC) -> None:
    pytest.importorskip("arviz", reason="to_arviz needs the arviz extra")
    idata = fitted.to_arviz()
    assert dict(idata.posterior.sizes) == {"chain": 2, "draw": 500}
    assert {"mu", "rate", "mu_plus_rate"} <= set(idata.posterior.data_vars)
    assert {"lp", "diverging"} <= set(idata.sample_stats.data_vars)
    np.testing.assert_array_equal(idata.observed_data["y"].values, Y)


def test_second_run_compiles_nothing(fitted: MCMC, count_compiles: Any) -> None:
    before = fitted.get_samples()["mu"]
    key = jax.random.key(1)
    with count_compiles() as compiles:
        fitted.run(key, Y, COUNTS)
    assert len(compiles) == 0
    assert not np.allclose(fitted.get_samples()["mu"], before)


def test_vectorised_chains_draw_what_sequential_chains_draw(short_sequential: np.ndarray) -> None:
    mcmc = MCMC(NUTS(conjugate), chain_method="vectorized", **SHORT_RUN)  # type: ignore[arg-type]
    mcmc.run(jax.random.key(0), Y, COUNTS)
    vectorised = np.asarray(mcmc.get_samples(group_by_chain=True)["mu"])
    np.testing.assert_allclose(vectorised, short_sequential, atol=1e-3)


def test_parallel_chains_over_devices_draw_what_sequential_chains_draw(
    short_sequential: np.ndarray,
) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        import jax, numpy as np
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_infer_mcmc import COUNTS, SHORT_RUN, Y, conjugate
        from plait.infer import MCMC, NUTS

        assert jax.device_count() == 2
        mcmc = MCMC(NUTS(conjugate), chain_method="parallel", **SHORT_RUN)
        mcmc.run(jax.random.key(0), Y, COUNTS)
        print(np.asarray(mcmc.get_samples(group_by_chain=True)["mu"]).tolist())
        """
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    parallel = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(parallel, short_sequential, atol=1e-3)


def test_unenumerable_discrete_latent_is_a_clear_error() -> None:
    def counts_model() -> None:
        k = plait.sample("k", dist.Poisson(3.0))
        plait.sample("x", dist.Normal(k, 1.0), obs=2.0)

    mcmc = MCMC(NUTS(counts_model), num_warmup=10, num_samples=10, progress_bar=False)
    with pytest.raises(
        SiteError,
        match=re.escape("site 'k' is a discrete latent (Poisson) that cannot be enumerated"),
    ) as info:
        mcmc.run(jax.random.key(0))
    assert "NUTS" in str(info.value)


@pytest.mark.filterwarnings("ignore:Out-of-support values:UserWarning")
def test_non_finite_initial_potential_after_the_retries_is_a_clear_error() -> None:
    def impossible(y: Any) -> None:
        shape = plait.sample("shape", dist.HalfNormal(1.0))
        plait.sample("y", dist.Gamma(shape, 1.0), obs=y)

    mcmc = MCMC(NUTS(impossible), num_warmup=10, num_samples=10, progress_bar=False)
    with pytest.raises(
        SiteError, match=re.escape("could not find a valid initial point in 100 tries")
    ) as info:
        mcmc.run(jax.random.key(0), -1.0)
    assert info.value.site == "y"


def test_enumerated_discrete_site_is_summed_out_of_the_potential() -> None:
    weights = jnp.array([0.3, 0.7])
    y = jnp.array([-1.1, 2.2, 1.8])

    def mixture(y: Any) -> None:
        loc = plait.sample("loc", dist.Normal(0.0, 3.0))
        with plait.plate("data", y.shape[0]):
            z = plait.sample("z", dist.Categorical(weights), infer={"enumerate": "parallel"})
            plait.sample("y", dist.Normal(jnp.where(z == 1, loc, -1.0), 1.0), obs=y)

    info = initialize_model(jax.random.key(0), mixture, model_args=(y,))
    loc = info.param_info.z["loc"]
    per_point = jnp.log(weights) + jnp.stack(
        [dist.Normal(-1.0, 1.0).log_prob(y), dist.Normal(loc, 1.0).log_prob(y)], axis=-1
    )
    expected = -(dist.Normal(0.0, 3.0).log_prob(loc) + jax.nn.logsumexp(per_point, axis=-1).sum())
    np.testing.assert_allclose(info.param_info.potential_energy, expected, rtol=1e-6)


def test_init_params_must_cover_every_latent_with_its_unconstrained_shape(fitted: MCMC) -> None:
    with pytest.raises(SiteError, match=re.escape("init_params has no value")):
        fitted.run(jax.random.key(0), Y, COUNTS, init_params={"mu": jnp.zeros(2)})
    with pytest.raises(SiteError, match=re.escape("init_params['rate'] has shape (3,)")):
        fitted.run(
            jax.random.key(0),
            Y,
            COUNTS,
            init_params={"mu": jnp.zeros(2), "rate": jnp.zeros((2, 3))},
        )
    with pytest.raises(ValueError, match="same leading dimension as `num_chains`"):
        fitted.run(jax.random.key(0), Y, COUNTS, init_params={"mu": 0.0, "rate": 0.0})
