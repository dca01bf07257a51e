"""``cond`` / ``switch`` under enumeration: an enumerated index sums the branches out.

Every log density is checked against brute force: the joint summed over every value of
every discrete variable, in float64 NumPy-style Python loops.
"""

from __future__ import annotations

import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from plait import plate, sample
from plait.control_flow import cond, scan, switch
from plait.enum import config_enumerate, infer_discrete, log_density

Y = jnp.array([0.3, 1.5, -2.0, 2.6])
P_Z = 0.3


def _lse(values: list[float]) -> float:
    return float(np.logaddexp.reduce(np.asarray(values, np.float64)))


@config_enumerate
def plated_mixture(y: Any) -> None:
    with plate("data", y.shape[0]):
        z = sample("z", dist.Bernoulli(P_Z))
        cond(
            z == 1,
            lambda _: sample("y", dist.Normal(2.0, 1.0), obs=y),
            lambda _: sample("y", dist.Laplace(-1.0, 0.5), obs=y),
            None,
        )


def test_enumerated_predicate_in_a_plate_sums_the_branches_out() -> None:
    value, _ = log_density(plated_mixture, (Y,))
    expected = sum(
        _lse(
            [
                np.log(P_Z) + float(dist.Normal(2.0, 1.0).log_prob(y)),
                np.log(1 - P_Z) + float(dist.Laplace(-1.0, 0.5).log_prob(y)),
            ]
        )
        for y in Y
    )
    np.testing.assert_allclose(value, expected, rtol=1e-6)


def test_enumerated_predicate_gradient_matches_the_hand_written_marginal() -> None:
    def ours(loc: Any) -> Any:
        @config_enumerate
        def model() -> None:
            with plate("data", Y.shape[0]):
                z = sample("z", dist.Bernoulli(P_Z))
                cond(
                    z == 1,
                    lambda _: sample("y", dist.Normal(loc, 1.0), obs=Y),
                    lambda _: sample("y", dist.Laplace(-1.0, 0.5), obs=Y),
                    None,
                )

        return log_density(model)[0]

    def marginal(loc: Any) -> Any:
        a = jnp.log(P_Z) + dist.Normal(loc, 1.0).log_prob(Y)
        b = jnp.log(1 - P_Z) + dist.Laplace(-1.0, 0.5).log_prob(Y)
        return jnp.logaddexp(a, b).sum()

    np.testing.assert_allclose(jax.jit(ours)(0.7), marginal(0.7), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(ours)(0.7), jax.grad(marginal)(0.7), rtol=1e-5)


PROBS = jnp.array([0.2, 0.5, 0.3])


@config_enumerate
def three_way(y: Any) -> None:
    k = sample("k", dist.Categorical(PROBS))

    def b0() -> Any:
        return sample("y", dist.Normal(0.0, 1.0), obs=y)

    def b1() -> Any:  # a discrete site of its own, enumerated inside the branch
        u = sample("u", dist.Bernoulli(0.6))
        return sample("y", dist.Normal(3.0 * u, 1.0), obs=y)

    def b2() -> Any:
        return sample("y", dist.StudentT(3.0, 1.0), obs=y)

    switch(k, [b0, b1, b2])


def test_enumerated_switch_with_a_discrete_site_in_a_branch() -> None:
    y = 0.7
    likelihoods = [
        float(dist.Normal(0.0, 1.0).log_prob(y)),
        _lse(
            [
                np.log(0.4) + float(dist.Normal(0.0, 1.0).log_prob(y)),
                np.log(0.6) + float(dist.Normal(3.0, 1.0).log_prob(y)),
            ]
        ),
        float(dist.StudentT(3.0, 1.0).log_prob(y)),
    ]
    expected = _lse([float(np.log(p)) + lik for p, lik in zip(PROBS, likelihoods, strict=True)])
    value, _ = log_density(three_way, (y,))
    np.testing.assert_allclose(value, expected, rtol=1e-6)


def test_a_discrete_site_of_both_branches_is_one_variable() -> None:
    @config_enumerate
    def model(y: Any) -> None:
        flip = sample("flip", dist.Bernoulli(0.5))
        cond(
            flip == 1,
            lambda _: sample("y", dist.Normal(2.0 * sample("u", dist.Bernoulli(0.2)), 1.0), obs=y),
            lambda _: sample("y", dist.Normal(-sample("u", dist.Bernoulli(0.9)), 1.0), obs=y),
            None,
        )

    y = 0.4
    terms = []
    for flip, u in itertools.product((0, 1), (0, 1)):
        p_u = (0.2 if u else 0.8) if flip else (0.9 if u else 0.1)
        loc = 2.0 * u if flip else -float(u)
        terms.append(np.log(0.5) + np.log(p_u) + float(dist.Normal(loc, 1.0).log_prob(y)))
    np.testing.assert_allclose(log_density(model, (y,))[0], _lse(terms), rtol=1e-6)


TRANS = jnp.array([[0.8, 0.2], [0.3, 0.7]])
YS = jnp.array([0.1, 2.5, -0.4, 3.1, 2.2])


def _emission(state: int, y: float) -> float:
    chosen = dist.Normal(0.0, 1.0) if state == 0 else dist.Laplace(2.5, 0.7)
    return float(chosen.log_prob(y))


@config_enumerate
def switching_hmm(ys: Any) -> Any:
    def step(x: Any, y: Any) -> Any:
        x = sample("x", dist.Categorical(TRANS[x]))
        cond(
            x == 0,
            lambda _: sample("y", dist.Normal(0.0, 1.0), obs=y),
            lambda _: sample("y", dist.Laplace(2.5, 0.7), obs=y),
            None,
        )
        return x, x

    return scan(step, 0, ys)[1]


@pytest.mark.parametrize("T", [1, 2, 5])
def test_enumerated_cond_inside_an_enumerated_scan(T: int) -> None:
    ys = YS[:T]
    paths = []
    for path in itertools.product((0, 1), repeat=T):
        lp, prev = 0.0, 0
        for t, s in enumerate(path):
            lp += float(np.log(TRANS[prev, s])) + _emission(s, float(ys[t]))
            prev = s
        paths.append(lp)
    np.testing.assert_allclose(log_density(switching_hmm, (ys,))[0], _lse(paths), rtol=1e-6)


def test_a_discrete_site_in_a_branch_inside_an_enumerated_scan() -> None:
    @config_enumerate
    def model(ys: Any) -> None:
        def step(x: Any, y: Any) -> Any:
            x = sample("x", dist.Categorical(TRANS[x]))

            def outlier(_: Any) -> Any:
                o = sample("o", dist.Bernoulli(0.1))
                return sample("y", dist.Normal(0.0, 1.0 + 4.0 * o), obs=y)

            cond(x == 0, outlier, lambda _: sample("y", dist.Normal(2.5, 1.0), obs=y), None)
            return x, None

        scan(step, 0, ys)

    ys = YS[:3]

    def emission(s: int, y: float) -> float:
        if s == 1:
            return float(dist.Normal(2.5, 1.0).log_prob(y))
        return _lse(
            [
                np.log(0.9) + float(dist.Normal(0.0, 1.0).log_prob(y)),
                np.log(0.1) + float(dist.Normal(0.0, 5.0).log_prob(y)),
            ]
        )

    paths = []
    for path in itertools.product((0, 1), repeat=3):
        lp, prev = 0.0, 0
        for t, s in enumerate(path):
            lp += float(np.log(TRANS[prev, s])) + emission(s, float(ys[t]))
            prev = s
        paths.append(lp)
    np.testing.assert_allclose(log_density(model, (ys,))[0], _lse(paths), rtol=1e-6)


def test_map_of_the_switching_hmm_is_the_best_path() -> None:
    best = max(
        itertools.product((0, 1), repeat=len(YS)),
        key=lambda path: sum(
            float(np.log(TRANS[p, s])) + _emission(s, float(YS[t]))
            for t, (p, s) in enumerate(zip((0, *path[:-1]), path, strict=True))
        ),
    )
    np.testing.assert_array_equal(infer_discrete(switching_hmm, temperature=0)(YS), best)


def test_map_of_the_plated_mixture_is_the_best_component_per_point() -> None:
    @config_enumerate
    def model(y: Any) -> Any:
        with plate("data", y.shape[0]):
            z = sample("z", dist.Bernoulli(P_Z))
            cond(
                z == 1,
                lambda _: sample("y", dist.Normal(2.0, 1.0), obs=y),
                lambda _: sample("y", dist.Laplace(-1.0, 0.5), obs=y),
                None,
            )
            return z

    one = np.log(P_Z) + dist.Normal(2.0, 1.0).log_prob(Y)
    zero = np.log(1 - P_Z) + dist.Laplace(-1.0, 0.5).log_prob(Y)
    np.testing.assert_array_equal(infer_discrete(model, temperature=0)(Y), one > zero)
