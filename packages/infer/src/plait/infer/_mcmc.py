"""``MCMC``: run a sampler's chains (vectorised, on several devices, or in turn).

Everything is compiled once per model structure and argument shapes and cached on the
``MCMC`` object: a second ``run`` (new key, new data of the same shapes) compiles nothing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, random
from jax.sharding import NamedSharding

from plait.infer._adaptation import schedule
from plait.infer._args import StaticArgs, split_args
from plait.infer._chains import (
    CHAINS,
    chain_mesh,
    first_draws,
    gathered,
    over_chains,
    per_chain,
    take_chain,
    vmap_chains,
)
from plait.infer._diagnostics import format_summary
from plait.infer._nuts import NUTS, ChainFunctions, SampleStats
from plait.infer._progress import chunk_plan, progress
from plait.infer._util import (
    ModelSpec,
    ParamInfo,
    _as_key,
    inspect_model,
    prototype_trace,
    raise_invalid_init,
)

__all__ = ["MCMC"]

ChainMethod = Literal["vectorized", "sequential", "parallel"]


@dataclass
class _Compiled:
    """The compiled programs of one model structure and argument signature."""

    fns: ChainFunctions
    init: Callable[..., Any]
    steps: Callable[..., Any]
    postprocess: Callable[..., Any]
    schedule: Array
    length: int


class MCMC:
    """Run ``sampler`` (:class:`NUTS`) for ``num_warmup`` adaptation steps and
    ``num_samples`` draws on each of ``num_chains`` chains.

    Args:
        sampler: the sampler, ``NUTS(model)``.
        num_warmup: warm-up (adaptation) steps per chain.
        num_samples: draws per chain after warm-up.
        num_chains: the number of chains.
        thinning: keep every ``thinning``-th draw.
        chain_method: ``"vectorized"`` (``vmap``), ``"parallel"`` (chains split over the
            devices with ``shard_map`` on a mesh; falls back to vectorised on one device)
            or ``"sequential"`` (one after another, same compiled code).
        progress_bar: show a tqdm bar (the run goes in compiled chunks between updates).

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
        sampler: NUTS,
        *,
        num_warmup: int,
        num_samples: int,
        num_chains: int = 1,
        thinning: int = 1,
        chain_method: ChainMethod = "vectorized",
        progress_bar: bool = True,
    ) -> None:
        if chain_method not in ("vectorized", "sequential", "parallel"):
            raise ValueError(
                f"chain_method must be 'vectorized', 'sequential' or 'parallel', got "
                f"{chain_method!r}."
            )
        if num_warmup < 0 or num_samples < 1 or num_chains < 1 or thinning < 1:
            raise ValueError(
                "MCMC needs num_warmup >= 0, num_samples >= 1, num_chains >= 1 and "
                f"thinning >= 1; got {num_warmup}, {num_samples}, {num_chains}, {thinning}."
            )
        self.sampler = sampler
        self.num_warmup = num_warmup
        self.num_samples = num_samples
        self.num_chains = num_chains
        self.thinning = thinning
        self.chain_method = chain_method
        self.progress_bar = progress_bar
        self._mesh = chain_mesh(num_chains) if chain_method == "parallel" else None
        self._compiled: dict[Any, _Compiled] = {}
        self._samples: dict[str, Array] | None = None
        self._stats: SampleStats | None = None
        self._spec: ModelSpec | None = None
        self.observed: dict[str, Any] = {}
        self.step_size: Array | None = None
        self.inverse_mass_matrix: Array | None = None

    # -- compilation -------------------------------------------------------------------
    def _compile(
        self, rng_key: Array, args: tuple[Any, ...], kwargs: Mapping[str, Any], static: StaticArgs
    ) -> _Compiled:
        tr = prototype_trace(rng_key, self.sampler.model, self.sampler.init_strategy, args, kwargs)
        spec = inspect_model(tr, algorithm="NUTS")
        fns = self.sampler.chain_functions(spec, static)

        def init(keys: Array, z: Any, dynamic: tuple[Any, ...]) -> Any:
            chains = vmap_chains(fns.init, (0, None if z is None else 0, None))
            return chains(keys, z, dynamic), fns.observed(dynamic)

        def steps(
            state: Any,
            adapt: Any,
            keys: Array,
            start: Array,
            num_steps: Array,
            warming: Array,
            sched: Array,
            dynamic: tuple[Any, ...],
            length: int,
        ) -> Any:
            fn = functools.partial(fns.steps, length=length)
            return over_chains(fn, (0, 0, 0, None, None, None, None, None), self._mesh)(
                state, adapt, keys, start, num_steps, warming, sched, dynamic
            )

        def postprocess(z: Any, dynamic: tuple[Any, ...]) -> Any:
            return jax.vmap(jax.vmap(fns.postprocess, (0, None)), (0, None))(z, dynamic)

        length = self._chunk_length()
        sched = schedule(self.num_warmup, self.sampler.adapt_mass_matrix)
        rows = max(length * math.ceil(self.num_warmup / length), length)
        sched = jnp.concatenate([sched, jnp.zeros((rows - sched.shape[0], 2), sched.dtype)])
        return _Compiled(
            fns,
            jax.jit(init),
            jax.jit(steps, static_argnames=("length",)),
            jax.jit(postprocess),
            sched,
            length,
        )

    def _chunk_length(self) -> int:
        """One chunk length for both phases (each phase pads its last chunk)."""
        draws = self.num_samples * self.thinning
        if not self.progress_bar:
            return max(self.num_warmup, draws)
        return chunk_plan(self.num_warmup + draws, True).length

    # -- running -----------------------------------------------------------------------
    def run(
        self,
        rng_key: Array | int,
        *args: Any,
        init_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Warm up and draw; ``args``/``kwargs`` go to the model.

        Args:
            rng_key: the key.
            *args: the model's positional arguments (arrays are traced: new data of the
                same shapes reuses the compiled sampler).
            init_params: unconstrained starting values by site name (with a leading chain
                dim, or shared by all chains); default: the sampler's init strategy.
            **kwargs: the model's keyword arguments.

        Raises:
            SiteError: a latent NUTS cannot handle, or no finite starting point.
        """
        key = _as_key(rng_key)
        dynamic, static = split_args(args, kwargs)
        signature = (static, tuple((np.shape(d), jnp.result_type(d)) for d in dynamic))
        proto_key, init_key, warm_key, sample_key = random.split(key, 4)
        compiled = self._compiled.get(signature)
        if compiled is None:
            compiled = self._compile(proto_key, args, kwargs, static)
            self._compiled[signature] = compiled
        keys = [random.split(k, self.num_chains) for k in (init_key, warm_key, sample_key)]
        spec = compiled.fns.spec
        z0 = None if init_params is None else per_chain(init_params, spec.shapes, self.num_chains)
        (state, adapt, ok), observed = compiled.init(keys[0], z0, dynamic)
        self.observed = jax.device_get(gathered(observed))
        info = gathered(ParamInfo(state.position, -state.logdensity, state.logdensity_grad))
        raise_invalid_init(
            self.sampler.model, compiled.fns.spec, info, gathered(ok), args, dict(kwargs)
        )
        if self.chain_method == "sequential":
            parts = [
                self._run_chains(
                    compiled,
                    take_chain(state, c),
                    take_chain(adapt, c),
                    keys[1][c : c + 1],
                    keys[2][c : c + 1],
                    dynamic,
                    f"chain {c}",
                )
                for c in range(self.num_chains)
            ]
            z = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *[p[0] for p in parts])
            stats = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *[p[1] for p in parts])
            step_size = jnp.concatenate([p[2] for p in parts])
            imm = jnp.concatenate([p[3] for p in parts])
        else:
            z, stats, step_size, imm = self._run_chains(
                compiled, state, adapt, keys[1], keys[2], dynamic, ""
            )
        self._spec = spec
        self.step_size, self.inverse_mass_matrix = step_size, imm
        self._stats = SampleStats(*(np.asarray(s) for s in stats))
        self._samples = gathered(
            compiled.postprocess(jax.tree_util.tree_map(jnp.asarray, z), dynamic)
        )

    def _run_chains(
        self,
        compiled: _Compiled,
        state: Any,
        adapt: Any,
        warm_keys: Array,
        sample_keys: Array,
        dynamic: tuple[Any, ...],
        label: str,
    ) -> Any:
        if self._mesh is not None:
            chain_sharding = NamedSharding(self._mesh, CHAINS)
            state, adapt = jax.device_put((state, adapt), chain_sharding)
        length = compiled.length
        draws = self.num_samples * self.thinning
        prefix = f"{label} " if label else ""
        phases = ((True, self.num_warmup, warm_keys), (False, draws, sample_keys))
        positions, stats = [], []
        final: tuple[Array, Array] | None = None
        with progress(self.num_warmup + draws, f"{prefix}warmup", self.progress_bar) as bar:
            for warming, n, keys in phases:
                if not warming:
                    if final is not None:  # after a warm-up, sample with what it tuned
                        adapt = adapt._replace(step_size=final[0], inverse_mass_matrix=final[1])
                    bar.set_description(f"{prefix}sample")
                for start in range(0, n, length):
                    done = min(length, n - start)
                    (state, adapt), (z, st), tuned = compiled.steps(
                        state,
                        adapt,
                        keys,
                        jnp.asarray(start),
                        jnp.asarray(done),
                        jnp.asarray(warming),
                        compiled.schedule,
                        dynamic,
                        length=length,
                    )
                    if not warming:
                        keep = functools.partial(first_draws, done=done)
                        positions.append(jax.tree_util.tree_map(keep, z))
                        stats.append(jax.tree_util.tree_map(keep, st))
                    else:
                        final = tuned
                        jax.block_until_ready(state)  # type: ignore[no-untyped-call,unused-ignore]
                    bar.update(done)
        thin = slice(None, None, self.thinning)
        z = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=1)[:, thin], *positions)
        st = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=1)[:, thin], *stats)
        return z, st, *gathered((adapt.step_size, adapt.inverse_mass_matrix))

    # -- results -----------------------------------------------------------------------
    def _require_samples(self) -> dict[str, Array]:
        if self._samples is None:
            raise RuntimeError("MCMC has no samples yet: call mcmc.run(rng_key, *args) first.")
        return self._samples

    def get_samples(self, group_by_chain: bool = False) -> dict[str, Array]:
        """The constrained draws of each latent and deterministic site, shaped
        ``(num_chains * num_samples, ...)`` or, with ``group_by_chain``,
        ``(num_chains, num_samples, ...)``."""
        samples = self._require_samples()
        if group_by_chain:
            return dict(samples)
        return {k: jnp.reshape(v, (-1, *v.shape[2:])) for k, v in samples.items()}

    def get_extra_fields(self, group_by_chain: bool = False) -> dict[str, np.ndarray]:
        """Per-draw NUTS statistics: ``potential_energy``, ``diverging``, ``accept_prob``,
        ``num_steps``, ``tree_depth``."""
        self._require_samples()
        assert self._stats is not None
        fields = self._stats._asdict()
        if group_by_chain:
            return dict(fields)
        return {k: np.reshape(v, (-1, *v.shape[2:])) for k, v in fields.items()}

    def print_summary(self, prob: float = 0.9, exclude_deterministic: bool = True) -> None:
        """Print mean, std, median, HPDI, effective sample size and split R-hat of every
        latent site, and the number of divergent transitions."""
        print(self.summary_text(prob, exclude_deterministic))

    def summary_text(self, prob: float = 0.9, exclude_deterministic: bool = True) -> str:
        """The text :meth:`print_summary` prints."""
        samples = self._require_samples()
        if exclude_deterministic and self._spec is not None:
            samples = {k: v for k, v in samples.items() if k in self._spec.names}
        divergences = int(np.sum(self.get_extra_fields()["diverging"]))
        return f"{format_summary(samples, prob)}\n\nNumber of divergences: {divergences}"

    def to_arviz(self) -> Any:
        """The run as an ArviZ ``InferenceData`` (posterior, sample_stats, observed_data)."""
        from plait.infer._arviz import to_arviz

        return to_arviz(self)
