"""Inference speed: plait-infer against NumPyro (and BlackJAX compiled ahead), one run.

1. SVI, Bayesian linear regression (N = 1000, D = 10, AutoNormal, Adam): the step time
   inside a compiled loop (``lax.scan`` over ``svi.update``, jitted, median of repeats),
   and ``svi.run`` wall time, first call (compiles) and second call.
2. NUTS, logistic regression (N = 1000, D = 10, 500 warm-up + 1000 draws, one chain):
   ``MCMC.run`` wall time, first and second call, and ESS per second (min and mean over
   the 11 coordinates, ESS by plait.infer.effective_sample_size for every sampler), with
   BlackJAX's ``window_adaptation`` + NUTS loop compiled ahead as the reference.

3. ``--mcmc``: the MCMC suite instead. HMC (NumPyro's defaults, trajectory length 2 pi)
   on a correlated, non-isotropic 10-dimensional Student-t (500 + 1000 steps):
   ``MCMC.run`` wall time and ESS/s (min, median and mean over the coordinates, the mean
   over three seeds) beside NumPyro's HMC run by its ``MCMC`` and compiled ahead. Warm-up success
   on NumPyro's hmm_enum model 1 (4 hidden states, JSB-like binary data, the hidden state
   enumerated out of a ``scan``, 300 warm-up + 300 draws) over 8 independent chains
   (8 keys, run as vectorised chains, each warming up on its own): a chain succeeds when
   its mean potential energy over the draws is within 10 nats of the best chain of both
   libraries. First-call compile of NumPyro's ar2 example written as a Python for-loop
   (144 sites), each measurement in a fresh process, interleaved.

4. ``--samplers``: BarkerMH on that logistic regression and DiscreteHMCGibbs(NUTS) on a
   Normal mixture with discrete assignments: ``MCMC.run`` wall time and ESS/s (mean ESS
   over three seeds) beside NumPyro's same kernels, run by its ``MCMC`` and compiled
   ahead in a ``lax.scan``.

5. ``--vi``: the autoguides instead. The SVI step time in a compiled loop for
   AutoDiagonalNormal, AutoMultivariateNormal, AutoLowRankMultivariateNormal and
   AutoIAFNormal on the SVI regression, and ``Predictive`` first and second call (1000
   posterior draws) on that regression and on an AR(2) written as a Python loop over
   T = 40 sites (140 with ``--full``), mapped (``parallel=False``, both libraries' default)
   and vmapped.

A and B are interleaved (plait, NumPyro, plait, NumPyro, ...); every result is blocked on.

Run: ``hatch run bench:inference`` (or ``python benchmarks/inference.py``); ``--full`` uses
N = 10000 (with ``--mcmc``: a larger HMM). Targets (BENCHMARKS.md §2): SVI step time <=
NumPyro's; a second run compiles nothing (>= 5x NumPyro's wall for repeated runs); NUTS
ESS/s equal to BlackJAX compiled ahead; ``Predictive``'s first call <= NumPyro's.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable
from typing import Any

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from jax import lax, random
from numpyro.contrib.control_flow import scan as nscan
from numpyro.handlers import mask as nmask
from numpyro.infer import HMC as NHMC
from numpyro.infer import MCMC as NMCMC
from numpyro.infer import NUTS as NNUTS
from numpyro.infer import SVI as NSVI
from numpyro.infer import BarkerMH as NBarkerMH
from numpyro.infer import DiscreteHMCGibbs as NDiscreteHMCGibbs
from numpyro.infer import Trace_ELBO as NTrace_ELBO
from numpyro.infer.autoguide import AutoNormal as NAutoNormal

import plait
from plait.infer import (
    HMC,
    MCMC,
    NUTS,
    SVI,
    AutoNormal,
    BarkerMH,
    DiscreteHMCGibbs,
    Trace_ELBO,
    effective_sample_size,
)


def linear_regression(lib: Any) -> Callable[..., None]:
    def model(x: Any, y: Any) -> None:
        w = lib.sample("w", dist.Normal(jnp.zeros(x.shape[1]), 1.0).to_event(1))
        b = lib.sample("b", dist.Normal(0.0, 1.0))
        sigma = lib.sample("sigma", dist.HalfNormal(1.0))
        with lib.plate("data", x.shape[0]):
            lib.sample("y", dist.Normal(x @ w + b, sigma), obs=y)

    return model


def logistic_regression(lib: Any) -> Callable[..., None]:
    def model(x: Any, y: Any) -> None:
        w = lib.sample("w", dist.Normal(jnp.zeros(x.shape[1]), 1.0).to_event(1))
        b = lib.sample("b", dist.Normal(0.0, 1.0))
        with lib.plate("data", x.shape[0]):
            lib.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)

    return model


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - start, out


def ess_stats(draws: dict[str, Any]) -> tuple[float, float, float]:
    """Min, median and mean ESS over every scalar coordinate of one chain's draws."""
    columns = [np.asarray(v).reshape(np.shape(v)[0], -1) for v in draws.values()]
    flat = np.concatenate(columns, axis=1)[None]
    ess = np.asarray(effective_sample_size(flat))
    return float(ess.min()), float(np.median(ess)), float(ess.mean())


# -- SVI ---------------------------------------------------------------------------------
def bench_svi(n: int, d: int, steps: int, repeat: int) -> list[tuple[str, float, float]]:
    kx, kw, ky = random.split(random.key(0), 3)
    x = random.normal(kx, (n, d))
    y = x @ random.normal(kw, (d,)) + 0.5 + 0.3 * random.normal(ky, (n,))
    ours_model, theirs_model = linear_regression(plait), linear_regression(numpyro)
    ours = SVI(ours_model, AutoNormal(ours_model), optax.adam(1e-2), Trace_ELBO())
    theirs = NSVI(theirs_model, NAutoNormal(theirs_model), optax.adam(1e-2), NTrace_ELBO())
    ours_state = ours.init(random.key(1), x, y)
    theirs_state = theirs.init(random.key(1), x, y)

    def loop(svi: Any) -> Any:
        def run(state: Any) -> Any:
            return lax.scan(lambda s, _: svi.update(s, x, y), state, None, length=steps)

        return jax.jit(run)

    ours_loop, theirs_loop = loop(ours), loop(theirs)
    compile_ours, _ = timed(lambda: ours_loop(ours_state))
    compile_theirs, _ = timed(lambda: theirs_loop(theirs_state))
    step_ours, step_theirs = [], []
    for _ in range(repeat):
        step_ours.append(timed(lambda: ours_loop(ours_state))[0] / steps)
        step_theirs.append(timed(lambda: theirs_loop(theirs_state))[0] / steps)
    runs_ours, runs_theirs = [], []
    for i in range(2):
        runs_ours.append(
            timed(lambda: ours.run(random.key(i), steps, x, y, progress_bar=False).losses)[0]  # noqa: B023
        )
        runs_theirs.append(
            timed(lambda: theirs.run(random.key(i), steps, x, y, progress_bar=False).losses)[0]  # noqa: B023
        )
    return [
        (
            "SVI step in a compiled loop [us]",
            statistics.median(step_ours) * 1e6,
            statistics.median(step_theirs) * 1e6,
        ),
        ("SVI compile of that loop [s]", compile_ours, compile_theirs),
        (f"svi.run({steps}) first call [s]", runs_ours[0], runs_theirs[0]),
        (f"svi.run({steps}) second call [s]", runs_ours[1], runs_theirs[1]),
    ]


# -- NUTS --------------------------------------------------------------------------------
def blackjax_ahead(
    x: Any, y: Any, warmup: int, samples: int
) -> tuple[float, float, dict[str, Any]]:
    """BlackJAX window adaptation + NUTS, compiled before timing: (compile s, run s, draws)."""

    def logdensity(p: dict[str, Any]) -> Any:
        logits = x @ p["w"] + p["b"]
        prior = dist.Normal(0.0, 1.0).log_prob(p["w"]).sum() + dist.Normal(0.0, 1.0).log_prob(
            p["b"]
        )
        return prior + dist.Bernoulli(logits=logits).log_prob(y).sum()

    def run(key: Any) -> Any:
        k1, k2, k3 = random.split(key, 3)
        init = {"w": random.uniform(k1, (x.shape[1],), minval=-2, maxval=2), "b": jnp.zeros(())}
        warm = blackjax.window_adaptation(blackjax.nuts, logdensity)
        (state, params), _ = warm.run(k2, init, num_steps=warmup)
        step = blackjax.nuts(logdensity, **params).step

        def one(state: Any, k: Any) -> Any:
            state, _ = step(k, state)
            return state, state.position

        _, draws = lax.scan(one, state, random.split(k3, samples))
        return draws

    start = time.perf_counter()
    compiled = jax.jit(run).lower(random.key(0)).compile()
    compile_time = time.perf_counter() - start
    run_time, draws = timed(lambda: compiled(random.key(1)))
    return compile_time, run_time, draws


def bench_nuts(n: int, d: int, warmup: int, samples: int) -> list[tuple[str, float, float, float]]:
    kx, kw, ky = random.split(random.key(2), 3)
    x = random.normal(kx, (n, d))
    y = random.bernoulli(ky, jax.nn.sigmoid(x @ (0.5 * random.normal(kw, (d,))) + 0.3))
    y = y.astype(jnp.float32)
    ours = MCMC(
        NUTS(logistic_regression(plait)), num_warmup=warmup, num_samples=samples, progress_bar=False
    )
    theirs = NMCMC(
        NNUTS(logistic_regression(numpyro)),
        num_warmup=warmup,
        num_samples=samples,
        progress_bar=False,
    )
    walls_ours, walls_theirs, ess_ours, ess_theirs = [], [], [], []
    for i in range(2):
        wall, _ = timed(lambda: (ours.run(random.key(i), x, y), ours.get_samples())[1])  # noqa: B023
        walls_ours.append(wall)
        ess_ours.append(ess_stats(ours.get_samples()))
        wall, _ = timed(lambda: (theirs.run(random.key(i), x, y), theirs.get_samples())[1])  # noqa: B023
        walls_theirs.append(wall)
        ess_theirs.append(ess_stats(theirs.get_samples()))
    bj_compile, bj_run, bj_draws = blackjax_ahead(x, y, warmup, samples)
    bj_ess = ess_stats(bj_draws)
    rows = [
        ("NUTS MCMC.run first call [s]", walls_ours[0], walls_theirs[0], float("nan")),
        ("NUTS MCMC.run second call [s]", walls_ours[1], walls_theirs[1], bj_run),
        # NumPyro compiles on every call, so first minus second is not its compile time.
        (
            "NUTS compile (first - second) [s]",
            walls_ours[0] - walls_ours[1],
            float("nan"),
            bj_compile,
        ),
        (
            "NUTS min ESS/s (second call)",
            ess_ours[1][0] / walls_ours[1],
            ess_theirs[1][0] / walls_theirs[1],
            bj_ess[0] / bj_run,
        ),
        (
            "NUTS mean ESS/s (second call)",
            ess_ours[1][2] / walls_ours[1],
            ess_theirs[1][2] / walls_theirs[1],
            bj_ess[2] / bj_run,
        ),
    ]
    return rows


# -- MCMC suite (--mcmc) --------------------------------------------------------------------
def correlated_student_t(lib: Any, d: int = 10) -> Callable[..., None]:
    """A non-isotropic, correlated, heavy-tailed target: a ``d``-dimensional Student-t
    (5 degrees of freedom) with correlations ``0.9^|i-j|`` and scales from 0.5 to 3."""
    lags = jnp.abs(jnp.arange(d)[:, None] - jnp.arange(d)[None, :])
    scale_tril = jnp.linalg.cholesky(0.9**lags) * jnp.linspace(0.5, 3.0, d)[:, None]

    def model() -> None:
        lib.sample("x", dist.MultivariateStudentT(5.0, jnp.zeros(d), scale_tril))

    return model


def bench_hmc(warmup: int, samples: int) -> list[tuple[str, float, float, float]]:
    """HMC (NumPyro's defaults: trajectory length 2 pi, adapted step size and diagonal
    mass matrix) on :func:`correlated_student_t`: ``MCMC.run`` wall time and ESS/s over
    ``SEEDS`` seeds, beside NumPyro's HMC run by its ``MCMC`` and compiled ahead.

    On a near-Gaussian posterior whose coordinates the adapted mass matrix whitens (the
    logistic regression of the NUTS rows), a fixed 2 pi trajectory is about one period:
    the draws come back near where they started, or opposite, and ESS swings from near
    zero to many times the number of draws (NumPyro's estimate even goes negative). The
    heavy tails make the oscillation's period depend on the energy, so the draws
    decorrelate and the ESS means something."""
    return bench_sampler(
        "HMC",
        HMC(correlated_student_t(plait)),
        lambda: NHMC(correlated_student_t(numpyro)),
        (),
        warmup,
        samples,
        ("x",),
    )


def hmm_data(
    hidden: int, tones: int, sequences: int, length: int, seed: int = 0
) -> tuple[Any, Any]:
    """JSB-like data: binary chords of ``tones`` notes from a sticky ``hidden``-state HMM
    with sparse emission probabilities, sequences of different lengths (masked)."""
    rng = np.random.default_rng(seed)
    trans = 0.8 * np.eye(hidden) + 0.2 * rng.dirichlet(0.3 * np.ones(hidden), size=hidden)
    emit = rng.beta(0.2, 1.0, size=(hidden, tones))
    lengths = rng.integers(length // 2, length + 1, size=sequences)
    seqs = np.zeros((sequences, length, tones), np.float32)
    for s in range(sequences):
        state = rng.integers(hidden)
        for t in range(lengths[s]):
            state = rng.choice(hidden, p=trans[state])
            seqs[s, t] = rng.random(tones) < emit[state]
    return jnp.asarray(seqs), jnp.asarray(lengths)


def hmm_model_1(lib: Any, scan: Any, mask: Any, hidden: int) -> Callable[..., None]:
    """NumPyro's examples/hmm_enum.py model 1 (the hidden state is not marked: both
    libraries enumerate it with a FutureWarning)."""

    def model_1(sequences: Any, lengths: Any) -> None:
        num_sequences, _, data_dim = sequences.shape
        with mask(mask=True):
            probs_x = lib.sample("probs_x", dist.Dirichlet(0.9 * jnp.eye(hidden) + 0.1).to_event(1))
            probs_y = lib.sample(
                "probs_y", dist.Beta(0.1, 0.9).expand([hidden, data_dim]).to_event(2)
            )

        def transition_fn(carry: Any, y: Any) -> Any:
            x_prev, t = carry
            with (
                lib.plate("sequences", num_sequences, dim=-2),
                mask(mask=(t < lengths)[..., None]),
            ):
                x = lib.sample("x", dist.Categorical(probs_x[x_prev]))
                with lib.plate("tones", data_dim, dim=-1):
                    lib.sample("y", dist.Bernoulli(probs_y[x.squeeze(-1)]), obs=y)
            return (x, t + 1), None

        x_init = jnp.zeros((num_sequences, 1), dtype=jnp.int32)
        scan(transition_fn, (x_init, 0), jnp.swapaxes(sequences, 0, 1))

    return model_1


def bench_warmup_success(
    full: bool, chains: int = 8, tolerance: float = 10.0
) -> list[tuple[str, float, float]]:
    from plait.control_flow import scan as pscan
    from plait.handlers import mask as pmask

    sizes = (4, 51, 16, 40) if full else (4, 16, 6, 25)
    hidden = sizes[0]
    seqs, lengths = hmm_data(*sizes)
    runs = {
        "plait": MCMC(
            NUTS(hmm_model_1(plait, pscan, pmask, hidden)),
            num_warmup=300,
            num_samples=300,
            num_chains=chains,
            chain_method="vectorized",
            progress_bar=False,
        ),
        "numpyro": NMCMC(
            NNUTS(hmm_model_1(numpyro, nscan, nmask, hidden)),
            num_warmup=300,
            num_samples=300,
            num_chains=chains,
            chain_method="vectorized",
            progress_bar=False,
        ),
    }
    energies, walls, steps = {}, {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        for name, mcmc in runs.items():
            wall, _ = timed(
                lambda m=mcmc: (
                    m.run(
                        random.key(0), seqs, lengths, extra_fields=("potential_energy", "num_steps")
                    ),
                    m.get_samples(),
                )[1]
            )
            extra = mcmc.get_extra_fields(group_by_chain=True)
            energies[name] = np.asarray(extra["potential_energy"]).mean(axis=1)
            steps[name] = float(np.asarray(extra["num_steps"]).mean())
            walls[name] = wall
    best = min(float(e.min()) for e in energies.values())
    success = {name: float(np.sum(e <= best + tolerance)) for name, e in energies.items()}
    for name, e in energies.items():
        print(
            f"  hmm_enum {name:8} mean potential energy per chain: {np.round(e - best, 1).tolist()}"
        )
    return [
        (f"HMM warm-up success of {chains} chains", success["plait"], success["numpyro"]),
        ("HMM mean leapfrog steps per draw", steps["plait"], steps["numpyro"]),
        ("HMM MCMC.run wall [s]", walls["plait"], walls["numpyro"]),
    ]


AR2_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import jax, jax.numpy as jnp
    import numpyro.distributions as dist
    lib_name = sys.argv[1]
    if lib_name == "plait":
        import plait as lib
        from plait.infer import MCMC, NUTS
    else:
        import numpyro as lib
        from numpyro.infer import MCMC, NUTS

    def ar2_for_loop(y):
        alpha_1 = lib.sample("alpha_1", dist.Normal(0, 1))
        alpha_2 = lib.sample("alpha_2", dist.Normal(0, 1))
        const = lib.sample("const", dist.Normal(0, 1))
        sigma = lib.sample("sigma", dist.HalfNormal(1))
        y_prev, y_prev_prev = y[1], y[0]
        for i in range(2, len(y)):
            m_t = const + alpha_1 * y_prev + alpha_2 * y_prev_prev
            y_t = lib.sample("y_{}".format(i), dist.Normal(m_t, sigma), obs=y[i])
            y_prev_prev, y_prev = y_prev, y_t

    t = jnp.arange(0, 142)
    y = jnp.sin(t) + jax.random.normal(jax.random.key(0), (142,)) * 0.1
    y.block_until_ready()
    mcmc = MCMC(NUTS(ar2_for_loop), num_warmup=10, num_samples=10, progress_bar=False)
    start = time.perf_counter()
    mcmc.run(jax.random.key(1), y=y)
    jax.block_until_ready(mcmc.get_samples())
    print(time.perf_counter() - start)
    """
)


def bench_unrolled_compile(rounds: int = 2) -> list[tuple[str, float, float]]:
    """First ``MCMC.run`` (10 + 10 steps: the compile) of the 144-site unrolled ar2, each
    in a fresh process, plait and NumPyro interleaved; the medians."""
    times: dict[str, list[float]] = {"plait": [], "numpyro": []}
    for _ in range(rounds):
        for name in times:
            done = subprocess.run(
                [sys.executable, "-c", AR2_SCRIPT, name], capture_output=True, text=True, check=True
            )
            times[name].append(float(done.stdout.strip().splitlines()[-1]))
    return [
        (
            "ar2 for-loop first MCMC.run [s]",
            statistics.median(times["plait"]),
            statistics.median(times["numpyro"]),
        ),
    ]


# -- BarkerMH and DiscreteHMCGibbs (the samplers section; run with --samplers) ---------
def mixture(lib: Any) -> Callable[..., None]:
    """A three-component Normal mixture with every assignment a discrete latent; the
    component locations' priors are ordered, so the labels do not switch."""

    def model(y: Any) -> None:
        locs = lib.sample("locs", dist.Normal(jnp.array([-3.0, 0.0, 3.0]), 0.5).to_event(1))
        with lib.plate("data", y.shape[0]):
            c = lib.sample("c", dist.Categorical(jnp.ones(3) / 3))
            lib.sample("y", dist.Normal(locs[c], 1.0), obs=y)

    return model


SEEDS = 3  # ESS of a single run is noisy (a mixture may start in a poor mode): average


def numpyro_ahead(
    kernel: Any, args: tuple[Any, ...], warmup: int, samples: int, sites: tuple[str, ...]
) -> tuple[float, tuple[float, ...]]:
    """NumPyro's own kernel stepped in a ``lax.scan`` compiled before timing (its
    sampling speed without the recompilation of every ``MCMC.run``): the median run
    time and the mean (min, median, mean) ESS over ``SEEDS`` starting states."""

    def run(state: Any) -> Any:
        def one(s: Any, _: Any) -> Any:
            s = kernel.sample(s, args, {})
            return s, {k: s.z[k] for k in sites}

        state, _ = lax.scan(one, state, None, length=warmup)
        return lax.scan(one, state, None, length=samples)[1]

    states = [kernel.init(random.key(seed), warmup, None, args, {}) for seed in range(SEEDS)]
    compiled = jax.jit(run).lower(states[0]).compile()
    walls, ess = [], []
    for state in states:
        wall, draws = timed(lambda s=state: compiled(s))
        walls.append(wall)
        ess.append(ess_stats(draws))
    return statistics.median(walls), tuple(np.mean(ess, axis=0))


def bench_sampler(
    name: str,
    ours_kernel: Any,
    make_theirs: Callable[[], Any],
    args: tuple[Any, ...],
    warmup: int,
    samples: int,
    sites: tuple[str, ...],
) -> list[tuple[str, float, float, float]]:
    """``MCMC.run`` as users write it (first call, then later calls), NumPyro's and
    plait's interleaved, and ESS/s: the mean ESS over runs (min, median and mean over the
    coordinates of ``sites``) per second of a later call; beside NumPyro's kernel
    compiled ahead."""
    ours = MCMC(ours_kernel, num_warmup=warmup, num_samples=samples, progress_bar=False)
    theirs = NMCMC(make_theirs(), num_warmup=warmup, num_samples=samples, progress_bar=False)
    walls: dict[str, list[float]] = {"plait": [], "numpyro": []}
    ess: dict[str, list[tuple[float, float, float]]] = {"plait": [], "numpyro": []}
    for i in range(SEEDS):
        runs = (("plait", ours), ("numpyro", theirs)) if i < 2 else (("plait", ours),)
        for label, mcmc in runs:  # NumPyro recompiles every call: two calls are enough
            wall, _ = timed(lambda m=mcmc: (m.run(random.key(i), *args), m.get_samples())[1])  # noqa: B023
            walls[label].append(wall)
            ess[label].append(
                ess_stats({k: v for k, v in mcmc.get_samples().items() if k in sites})
            )
    ahead_wall, ahead = numpyro_ahead(make_theirs(), args, warmup, samples, sites)
    wall = {"plait": statistics.median(walls["plait"][1:]), "numpyro": walls["numpyro"][1]}
    mean_ess = {k: np.mean(v, axis=0) for k, v in ess.items()}
    nan = float("nan")
    return [
        (f"{name} MCMC.run first call [s]", walls["plait"][0], walls["numpyro"][0], nan),
        (f"{name} MCMC.run later call [s]", wall["plait"], wall["numpyro"], ahead_wall),
        (
            f"{name} min ESS/s (later call)",
            mean_ess["plait"][0] / wall["plait"],
            mean_ess["numpyro"][0] / wall["numpyro"],
            ahead[0] / ahead_wall,
        ),
        (
            f"{name} median ESS/s (later call)",
            mean_ess["plait"][1] / wall["plait"],
            mean_ess["numpyro"][1] / wall["numpyro"],
            ahead[1] / ahead_wall,
        ),
        (
            f"{name} mean ESS/s (later call)",
            mean_ess["plait"][2] / wall["plait"],
            mean_ess["numpyro"][2] / wall["numpyro"],
            ahead[2] / ahead_wall,
        ),
    ]


def bench_samplers(n: int, d: int) -> list[tuple[str, float, float, float]]:
    """BarkerMH on the logistic regression of the NUTS rows (1000 warm-up + 5000 draws),
    DiscreteHMCGibbs(NUTS) on a mixture of 3 Normals with 60 assignments (500 + 1000)."""
    kx, kw, ky, kc, km = random.split(random.key(3), 5)
    x = random.normal(kx, (n, d))
    y = random.bernoulli(ky, jax.nn.sigmoid(x @ (0.5 * random.normal(kw, (d,))) + 0.3))
    y = y.astype(jnp.float32)
    rows = bench_sampler(
        "BarkerMH",
        BarkerMH(logistic_regression(plait)),
        lambda: NBarkerMH(logistic_regression(numpyro)),
        (x, y),
        1000,
        5000,
        ("w", "b"),
    )
    c = random.categorical(kc, jnp.zeros(3), shape=(60,))
    ym = jnp.array([-3.0, 0.0, 3.0])[c] + random.normal(km, (60,))
    rows += bench_sampler(
        "DiscreteHMCGibbs",
        DiscreteHMCGibbs(NUTS(mixture(plait))),
        lambda: NDiscreteHMCGibbs(NNUTS(mixture(numpyro))),
        (ym,),
        500,
        1000,
        ("locs",),
    )
    return rows


def main_samplers(full: bool) -> None:
    n = 10_000 if full else 1000
    print_sampler_rows(bench_samplers(n, 10))


def print_sampler_rows(rows: list[tuple[str, float, float, float]]) -> None:
    print(
        f"\n{'quantity':40} {'plait':>10} {'numpyro':>10} {'ratio':>8}   {'np-ahead':>9} {'ratio':>7}"
    )
    for name, ours, theirs, ahead in rows:
        np_cells = f"{theirs:10.4g} {ours / theirs:8.2f}"
        ahead_cells = (
            f"{ahead:9.4g} {ours / ahead:7.2f}" if np.isfinite(ahead) else f"{'-':>9} {'-':>7}"
        )
        print(f"{name:40} {ours:10.4g} {np_cells}   {ahead_cells}")
    print("\nratio = plait / reference: below 1 is faster for times, above 1 is better for ESS/s.")
    print("np-ahead: NumPyro's kernel stepped in a lax.scan compiled before timing.")


def main_mcmc(full: bool) -> None:
    print_sampler_rows(bench_hmc(500, 1000))
    rows = bench_warmup_success(full) + bench_unrolled_compile()
    print(f"\n{'quantity':40} {'plait':>10} {'numpyro':>10} {'ratio':>8}")
    for name, ours, theirs in rows:
        print(f"{name:40} {ours:10.4g} {theirs:10.4g} {ours / theirs:8.2f}")
    print(
        "\nratio = plait / NumPyro: below 1 is faster for times, above 1 is better for ESS/s and successes."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="N = 10000 instead of 1000")
    parser.add_argument("--svi-steps", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--mcmc", action="store_true", help="the MCMC suite (HMC, warm-up, compile)"
    )
    parser.add_argument(
        "--samplers", action="store_true", help="BarkerMH and DiscreteHMCGibbs against NumPyro"
    )
    parser.add_argument("--vi", action="store_true", help="only the VI suite (inference_vi.py)")
    args = parser.parse_args()
    if args.samplers:
        print(
            f"jax {jax.__version__}, numpyro {numpyro.__version__}, blackjax "
            f"{blackjax.__version__}, backend {jax.default_backend()}"
        )
        main_samplers(args.full)
        return
    if args.mcmc:
        print(
            f"jax {jax.__version__}, numpyro {numpyro.__version__}, backend {jax.default_backend()}"
        )
        main_mcmc(args.full)
        return
    n = 10_000 if args.full else 1000
    print(
        f"jax {jax.__version__}, numpyro {numpyro.__version__}, blackjax {blackjax.__version__}, "
        f"backend {jax.default_backend()}, N = {n}, D = 10"
    )
    if args.vi:
        from inference_vi import print_rows, vi_rows

        print_rows(vi_rows(n, args.svi_steps, args.repeat, 140 if args.full else 40))
        print("\nratio = plait / NumPyro: below 1 is faster.")
        return
    svi_rows = bench_svi(n, 10, args.svi_steps, args.repeat)
    nuts_rows = bench_nuts(n, 10, 500, 1000)
    print(
        f"\n{'quantity':40} {'plait':>10} {'numpyro':>10} {'ratio':>8}   {'blackjax':>9} {'ratio':>7}"
    )
    for name, ours, theirs in svi_rows:
        print(f"{name:40} {ours:10.4g} {theirs:10.4g} {ours / theirs:8.2f}")
    for name, ours, theirs, bj in nuts_rows:
        np_cells = (
            f"{theirs:10.4g} {ours / theirs:8.2f}" if np.isfinite(theirs) else f"{'-':>10} {'-':>8}"
        )
        bj_cells = f"{bj:9.4g} {ours / bj:7.2f}" if np.isfinite(bj) else f"{'-':>9} {'-':>7}"
        print(f"{name:40} {ours:10.4g} {np_cells}   {bj_cells}")
    print("\nratio = plait / reference: below 1 is faster for times, above 1 is better for ESS/s.")


if __name__ == "__main__":
    main()
