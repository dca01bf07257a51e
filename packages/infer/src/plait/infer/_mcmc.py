"""``MCMC``: run a kernel's chains (on several devices, vectorised, or in turn).

The kernel's functions are compiled once per model structure and argument signature and
cached on the ``MCMC`` object. Array arguments are traced when the model allows it, so a
second ``run`` on new data of the same shapes compiles nothing; a model that reads
concrete values from its data (``k = int(y.max()) + 1``) gets them as constants instead
(NumPyro's ``jit_model_args=False``), compiled again only for different data.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, random

from plait.infer._chains import chain_mesh, take_chain
from plait.infer._collect import FieldPlan, Programs, plan_fields
from plait.infer._diagnostics import format_summary
from plait.infer._kernel import MCMCKernel
from plait.infer._progress import chunk_plan
from plait.infer._runner import ChainRunner
from plait.infer._util import _as_key, _is_batched_key

__all__ = ["MCMC"]

ChainMethod = Literal["parallel", "sequential", "vectorized"]


class MCMC:
    """Run ``sampler`` for ``num_warmup`` warm-up steps and ``num_samples`` draws on each
    of ``num_chains`` chains (NumPyro's ``MCMC``).

    Args:
        sampler: the kernel (:class:`NUTS`, :class:`HMC`, any :class:`MCMCKernel`).
        num_warmup: warm-up (adaptation) steps per chain.
        num_samples: steps per chain after warm-up; ``num_samples // thinning`` are kept.
        num_chains: the number of chains.
        thinning: keep every ``thinning``-th draw.
        postprocess_fn: maps a draw of the sample field to what ``get_samples`` returns
            (default: the kernel's: constrained latents and deterministic sites).
        chain_method: ``"parallel"`` (chains split over the devices with ``shard_map``;
            one after another, with a warning, when there is one device),
            ``"vectorized"`` (``vmap``) or ``"sequential"`` (one after another).
        progress_bar: show a tqdm bar (the run goes in compiled chunks between updates).
        progress_rate: steps per progress-bar update (default: about 20 updates).
        jit_model_args: require traced model arguments (new data of the same shapes
            never recompiles; a model that needs concrete values from its data fails).
            By default they are traced when the model allows it, and held as constants
            otherwise.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import plate, sample
        >>> from plait.infer import MCMC, NUTS
        >>> def model(y):
        ...     mu = sample("mu", dist.Normal(0.0, 10.0))
        ...     with plate("data", y.shape[0]):
        ...         sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> mcmc = MCMC(NUTS(model), num_warmup=200, num_samples=200, progress_bar=False)
        >>> mcmc.run(jax.random.key(0), jnp.full(100, 2.0))
        >>> bool(abs(mcmc.get_samples()["mu"].mean() - 2.0) < 0.1)
        True
    """

    def __init__(
        self,
        sampler: MCMCKernel[Any],
        *,
        num_warmup: int,
        num_samples: int,
        num_chains: int = 1,
        thinning: int = 1,
        postprocess_fn: Callable[[Any], Any] | None = None,
        chain_method: ChainMethod = "parallel",
        progress_bar: bool = True,
        progress_rate: int | None = None,
        jit_model_args: bool = False,
    ) -> None:
        if not isinstance(num_warmup, int) or num_warmup < 0:
            raise ValueError(f"num_warmup must be a nonnegative integer, got {num_warmup!r}.")
        if not isinstance(thinning, int) or thinning < 1:
            raise ValueError(f"thinning must be a positive integer, got {thinning!r}.")
        if not isinstance(num_samples, int) or num_samples < thinning:
            raise ValueError(
                f"num_samples must be a positive integer greater than thinning, got "
                f"num_samples={num_samples!r}, thinning={thinning}."
            )
        if not isinstance(num_chains, int) or num_chains < 1:
            raise ValueError(f"num_chains must be a positive integer, got {num_chains!r}.")
        if chain_method not in ("parallel", "vectorized", "sequential"):
            raise ValueError(
                "Only supporting the following methods to draw chains: 'sequential', "
                f"'parallel', or 'vectorized'; got {chain_method!r}."
            )
        self.sampler = sampler
        self.num_warmup = num_warmup
        self.num_samples = num_samples
        self.num_chains = num_chains
        self.thinning = thinning
        self.postprocess_fn = postprocess_fn
        self.progress_bar = progress_bar and not (
            "CI" in os.environ or "PYTEST_XDIST_WORKER" in os.environ
        )
        self.progress_rate = progress_rate
        self._jit_model_args = jit_model_args
        self._mesh = None
        if chain_method == "parallel" and num_chains > 1 and not sampler.is_ensemble_kernel:
            self._mesh = chain_mesh(num_chains)
            if self._mesh is None:
                chain_method = "sequential"
        self.chain_method: ChainMethod = chain_method
        self._runner = ChainRunner(
            sampler,
            num_warmup,
            num_chains,
            thinning,
            chain_method,
            self._mesh,
            self.progress_bar,
            jit_model_args,
            postprocess_fn,
        )
        self._states: dict[str, Any] | None = None
        self._states_flat: dict[str, Any] | None = None
        self._last_state: Any = None
        self._warmup_state: Any = None
        self._plan: FieldPlan | None = None
        self._args: tuple[Any, ...] = ()
        self._kwargs: dict[str, Any] = {}

    # -- state ---------------------------------------------------------------------------
    @property
    def last_state(self) -> Any:
        """The state of the chains at the end of the last run (with a leading chain axis
        when ``num_chains > 1``)."""
        return self._last_state

    @property
    def post_warmup_state(self) -> Any:
        """The state to start sampling from, skipping warm-up: set by :meth:`warmup`, or
        by hand (``mcmc.post_warmup_state = mcmc.last_state`` continues the chains; run
        with ``mcmc.last_state.rng_key`` to draw exactly what one longer run would)."""
        return self._warmup_state

    @post_warmup_state.setter
    def post_warmup_state(self, state: Any) -> None:
        self._warmup_state = state

    # -- running -------------------------------------------------------------------------
    def warmup(
        self,
        rng_key: Array | int,
        *args: Any,
        extra_fields: Sequence[str] = (),
        collect_warmup: bool = False,
        init_params: Any = None,
        **kwargs: Any,
    ) -> None:
        """Run the warm-up only; then :meth:`run` samples from :attr:`post_warmup_state`.

        Args:
            rng_key: the key (or ``num_chains`` keys).
            *args: the model's positional arguments.
            extra_fields: state fields to collect besides the kernel's defaults.
            collect_warmup: keep the warm-up draws (``get_samples`` returns them).
            init_params: the starting point (unconstrained values by site name).
            **kwargs: the model's keyword arguments.
        """
        self._warmup_state = None
        self._run(
            rng_key,
            args,
            kwargs,
            extra_fields,
            init_params,
            phases=("warmup",),
            collect_warmup=collect_warmup,
        )
        self._warmup_state = self._last_state

    def run(
        self,
        rng_key: Array | int,
        *args: Any,
        extra_fields: Sequence[str] = (),
        init_params: Any = None,
        **kwargs: Any,
    ) -> None:
        """Warm up (unless :attr:`post_warmup_state` is set) and draw.

        Args:
            rng_key: the key, or a batch of ``num_chains`` keys.
            *args: the model's positional arguments.
            extra_fields: state fields to collect besides the kernel's defaults
                (``"accept_prob"``, ``"adapt_state.step_size"``, ``"z.x"`` for a site's
                unconstrained value); ``"~z.x"`` drops site ``x`` from the samples.
            init_params: the starting point: for a model, unconstrained values by site
                name (with a leading chain dim when ``num_chains > 1``).
            **kwargs: the model's keyword arguments.

        Raises:
            SiteError: a latent the kernel cannot handle, or no valid starting point.
        """
        phases = ("sample",) if self._warmup_state is not None else ("warmup", "sample")
        self._run(
            rng_key, args, kwargs, extra_fields, init_params, phases=phases, collect_warmup=False
        )

    def _keys(self, rng_key: Array | int) -> Array:
        key = _as_key(rng_key)
        if _is_batched_key(key):
            if key.shape[0] != self.num_chains:
                raise ValueError(
                    f"MCMC.run got {key.shape[0]} keys for {self.num_chains} chains; give one "
                    "key or num_chains keys."
                )
            return key
        return random.split(key, self.num_chains) if self.num_chains > 1 else key[None]

    def _chunk_length(self, phases: tuple[str, ...], collect_warmup: bool) -> int:
        t = self.thinning
        steps = [self.num_warmup if p == "warmup" else self.num_samples for p in phases]
        if self.progress_bar:
            rate = self.progress_rate or chunk_plan(sum(steps), True).length
        else:
            rate = max([*steps, 1])
        return max(t, -(-max(rate, 1) // t) * t)

    def _run(
        self,
        rng_key: Array | int,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        extra_fields: Sequence[str],
        init_params: Any,
        *,
        phases: tuple[str, ...],
        collect_warmup: bool,
    ) -> None:
        kernel = self.sampler
        if kernel.is_ensemble_kernel and (self.chain_method != "vectorized" or self.num_chains < 2):
            # NumPyro's EnsembleSampler asserts this (AIES, ESS: the chains are one ensemble).
            raise AssertionError(
                "EnsembleSampler only supports chain_method='vectorized' with num_chains > 1; "
                f"got chain_method={self.chain_method!r}, num_chains={self.num_chains}."
            )
        keys = self._keys(rng_key)
        plan = plan_fields(kernel.sample_field, kernel.default_fields, extra_fields)
        self._args, self._kwargs = tuple(args), dict(kwargs)
        self._runner.bind(self._args, self._kwargs)
        first_key = keys[0]
        prepared = kernel.prepare(random.split(first_key)[1], self._args, self._kwargs)
        length = self._chunk_length(phases, collect_warmup)
        if self._warmup_state is not None and "warmup" not in phases:
            programs, dynamic = self._runner.get_programs(plan, length, prepared)
            state = self._resume_state(keys)
        else:
            state, programs, dynamic = self._runner.init(plan, length, prepared, keys, init_params)
        collected: list[Any] = []
        for phase in phases:
            steps = self.num_warmup if phase == "warmup" else self.num_samples
            keep = phase == "sample" or collect_warmup
            state, draws = self._runner.run_phase(programs, state, dynamic, steps, keep, phase)
            if keep:
                collected.append(draws)
        self._finish(programs, plan, state, collected, dynamic)

    def _resume_state(self, keys: Array) -> Any:
        state = self._warmup_state
        if self.sampler.is_ensemble_kernel:
            return self.sampler.with_rng_key(state, keys[0])
        if self.num_chains == 1:
            state = jax.tree_util.tree_map(lambda x: jnp.asarray(x)[None], state)
        return self.sampler.with_rng_key(state, keys)

    def _finish(
        self,
        programs: Programs,
        plan: FieldPlan,
        state: Any,
        collected: list[Any],
        dynamic: tuple[Any, ...],
    ) -> None:
        ensemble = self.sampler.is_ensemble_kernel
        if not ensemble and self.num_chains == 1:
            state = take_chain(state, 0, keep_axis=False)
        self._last_state = state
        self._plan = plan
        if not collected:
            self._states, self._states_flat = None, None
            return
        draws = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs, axis=1), *collected)
        states = dict(zip(plan.fields, draws, strict=True))
        batch = (
            jax.tree_util.tree_leaves(draws)[0].shape[:2]
            if jax.tree_util.tree_leaves(draws)
            else (self.num_chains, 0)
        )
        samples = programs.postprocess(states[plan.fields[0]], dynamic, batch)
        if plan.removed and isinstance(samples, dict):
            samples = {k: v for k, v in samples.items() if k not in plan.removed}
        states[plan.fields[0]] = samples
        self._states, self._states_flat = states, None

    # -- results -------------------------------------------------------------------------
    def _require_states(self) -> dict[str, Any]:
        if self._states is None:
            raise RuntimeError("MCMC has no samples yet: call mcmc.run(rng_key, *args) first.")
        return self._states

    def _get_states_flat(self) -> dict[str, Any]:
        if self._states_flat is None:
            self._states_flat = jax.tree_util.tree_map(
                lambda x: jnp.reshape(x, (x.shape[0] * x.shape[1], *x.shape[2:])),
                self._require_states(),
            )
        return self._states_flat

    def get_samples(self, group_by_chain: bool = False) -> Any:
        """The draws: for a model, constrained latent and deterministic values by site,
        shaped ``(num_chains * num_draws, ...)`` or, with ``group_by_chain``,
        ``(num_chains, num_draws, ...)``."""
        states = self._require_states() if group_by_chain else self._get_states_flat()
        assert self._plan is not None
        return states[self._plan.fields[0]]

    def get_extra_fields(self, group_by_chain: bool = False) -> dict[str, Any]:
        """The other collected state fields (the kernel's defaults, e.g. ``diverging``,
        and the ``extra_fields`` of the run), shaped as :meth:`get_samples`."""
        states = self._require_states() if group_by_chain else self._get_states_flat()
        assert self._plan is not None
        return {k: v for k, v in states.items() if k != self._plan.fields[0]}

    def print_summary(self, prob: float = 0.9, exclude_deterministic: bool = True) -> None:
        """Print mean, std, median, the ``prob`` HPDI, effective sample size and split
        R-hat of every latent site, and the number of divergent transitions."""
        print(self.summary_text(prob, exclude_deterministic))

    def summary_text(self, prob: float = 0.9, exclude_deterministic: bool = True) -> str:
        """The text :meth:`print_summary` prints."""
        states = self._require_states()
        assert self._plan is not None
        sites = states[self._plan.fields[0]]
        if not isinstance(sites, Mapping):
            sites = {"Param:0": sites}
        elif exclude_deterministic:
            z = getattr(self._last_state, self.sampler.sample_field, None)
            if isinstance(z, Mapping):
                sites = {k: v for k, v in sites.items() if k in z}
        text = format_summary(sites, prob)
        extra = self.get_extra_fields()
        if "diverging" in extra:
            text += f"\n\nNumber of divergences: {int(np.sum(np.asarray(extra['diverging'])))}"
        return text

    def transfer_states_to_host(self) -> None:
        """Move the collected draws to host memory (NumPy arrays)."""
        self._states = jax.device_get(self._require_states())
        self._states_flat = jax.device_get(self._get_states_flat())

    def to_arviz(self) -> Any:
        """The run as an ArviZ ``InferenceData`` (posterior, sample_stats, observed_data)."""
        from plait.infer._arviz import to_arviz

        return to_arviz(self)

    def observed_data(self) -> dict[str, Any]:
        """The values of the model's observed sites in the last run (for ArviZ)."""
        model = self.sampler.model
        if model is None:
            return {}
        from plait.handlers import seed, trace

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tr = trace(seed(model, 0)).get_trace(*self._args, **self._kwargs)
        return {
            name: site.value
            for name, site in tr.items()
            if site.type == "sample" and site.is_observed and not site.infer.get("is_auxiliary")
        }
