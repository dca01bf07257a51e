"""ESS, split R-hat and HPDI against NumPyro's diagnostics (and a closed form)."""

from __future__ import annotations

import numpy as np
import pytest
from numpyro import diagnostics

from plait.infer import effective_sample_size, hpdi, split_gelman_rubin, summary


def ar1(chains: int, draws: int, rho: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((chains, draws, 3))
    noise = rng.normal(size=(chains, draws, 3))
    x[:, 0] = noise[:, 0]
    for t in range(1, draws):
        x[:, t] = rho * x[:, t - 1] + np.sqrt(1 - rho**2) * noise[:, t]
    return x


@pytest.mark.parametrize("chains", [1, 4])
def test_effective_sample_size_equals_numpyro(chains: int) -> None:
    x = ar1(chains, 1000, 0.6, seed=chains)
    np.testing.assert_allclose(
        effective_sample_size(x), diagnostics.effective_sample_size(x), rtol=1e-8
    )


def test_effective_sample_size_of_ar1_chains_is_near_the_closed_form() -> None:
    rho = 0.6
    x = ar1(4, 5000, rho, seed=0)
    expected = x.shape[0] * x.shape[1] * (1 - rho) / (1 + rho)
    np.testing.assert_allclose(effective_sample_size(x), expected, rtol=0.2)


def test_split_gelman_rubin_equals_numpyro_and_flags_shifted_chains() -> None:
    x = ar1(3, 400, 0.3, seed=7)
    np.testing.assert_allclose(split_gelman_rubin(x), diagnostics.split_gelman_rubin(x), rtol=1e-10)
    shifted = x + np.arange(3)[:, None, None]
    assert np.all(split_gelman_rubin(shifted) > 1.2)


def test_hpdi_equals_numpyro() -> None:
    x = np.random.default_rng(1).gamma(2.0, size=(2000, 2))
    np.testing.assert_allclose(hpdi(x, 0.8), diagnostics.hpdi(x, 0.8), rtol=1e-12)


def test_summary_reports_each_statistic() -> None:
    x = ar1(2, 500, 0.2, seed=3)
    stats = summary({"x": x}, prob=0.5)["x"]
    assert sorted(stats) == ["25.0%", "75.0%", "mean", "median", "n_eff", "r_hat", "std"]
    np.testing.assert_allclose(stats["mean"], x.reshape(-1, 3).mean(0))
    assert stats["n_eff"].shape == (3,)
