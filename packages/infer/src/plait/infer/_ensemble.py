"""``AIES`` and ``ESS``: ensemble samplers, the chains moving together as one ensemble.

The ``num_chains`` chains of ``MCMC`` are the walkers; a step updates one half of them
from the other (see :mod:`plait.infer._ensemble_step`). Gradient-free; suited to low and
moderate dimensions with ``num_chains`` at least twice the dimension (NumPyro's
``numpyro.infer.ensemble``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, random
from jax.flatten_util import ravel_pytree

from plait.infer._ensemble_step import (
    AIESState,
    EnsembleSamplerState,
    ESSState,
    aies_update,
    ensemble_step,
    ess_update,
)
from plait.infer._init import InitStrategy, init_to_uniform
from plait.infer._moves import (
    DEMove,
    DifferentialMove,
    GaussianMove,
    KDEMove,
    RandomMove,
    StretchMove,
)
from plait.infer._on_model import ModelKernel

__all__ = ["AIES", "ESS", "EnsembleSampler"]


def _batch_ravel(z: Any) -> tuple[Array, Callable[[Array], Any], Callable[[Array], Any]]:
    """The walkers ``z`` (leading chain dim) as rows ``(num_chains, D)``, and the maps
    from a batch of rows and from one row back to the pytree."""
    one = jax.tree_util.tree_map(lambda x: x[0], z)
    unravel_one = ravel_pytree(one)[1]
    flat = jax.vmap(lambda x: ravel_pytree(x)[0])(z)
    return flat, jax.vmap(unravel_one), unravel_one


def _weights(
    moves: Mapping[Any, float] | None, default: Any, names: str
) -> tuple[list[Any], Array]:
    """The moves and their normalised probabilities. Errors are NumPyro's
    ``AssertionError``s (its kernels assert), with a message that names the fix."""
    if not moves:
        return [default], jnp.ones(1)
    keys = list(moves)
    if not all(callable(m) for m in keys):
        raise AssertionError(
            f"Each move must be a callable (one of {names}); got {keys!r}. Pass "
            "moves={Kernel.SomeMove(): probability, ...}."
        )
    weights = np.asarray(list(moves.values()), np.float64)
    if np.any(weights < 0) or weights.sum() <= 0:
        raise AssertionError(
            f"Each specified move must have probability >= 0 (and not all 0); got {weights}."
        )
    return keys, jnp.asarray(weights / weights.sum())


class EnsembleSampler(ModelKernel[EnsembleSamplerState]):
    """The base of :class:`AIES` and :class:`ESS` (NumPyro's ``EnsembleSampler``): an
    even number of walkers, each half updated from the other.

    A subclass implements NumPyro's ``init_inner_state(rng_key)`` and
    ``update_active_chains(active, inactive, inner_state) -> (active, inner_state)``
    (``active`` and ``inactive`` are halves of the walkers, flattened to ``(n, D)``;
    ``self._batch_log_density`` is the log density of such a batch).
    """

    def __init__(
        self,
        model: Callable[..., Any] | None = None,
        potential_fn: Callable[[Any], Array] | None = None,
        *,
        randomize_split: bool,
        init_strategy: InitStrategy,
    ) -> None:
        super().__init__(model, potential_fn, init_strategy)
        self._randomize_split = randomize_split
        self._num_warmup = 0
        self._num_chains: int | None = None
        self._batch_log_density: Callable[[Array], Array] | None = None

    @property
    def is_ensemble_kernel(self) -> bool:
        return True

    def init_inner_state(self, rng_key: Array) -> Any:
        """The sampler's own state at the start."""
        raise NotImplementedError

    def update_active_chains(
        self, active: Array, inactive: Array, inner_state: Any
    ) -> tuple[Array, Any]:
        """The updated ``active`` walkers and inner state (NumPyro's method)."""
        raise NotImplementedError

    def _update(
        self,
        active: Array,
        log_density: Array,
        inactive: Array,
        inner_state: Any,
        logdensity_fn: Callable[[Array], Array],
    ) -> tuple[Array, Array, Any]:
        """:meth:`update_active_chains` with the walkers' log densities carried along;
        here recomputed, overridden by AIES and ESS, which compute them as they move."""
        new, inner_state = self.update_active_chains(active, inactive, inner_state)
        return new, jax.vmap(logdensity_fn)(new), inner_state

    def _fresh_inner(self, inner_state: Any, rng_key: Array) -> Any:
        """The inner state drawing from ``rng_key`` (AIES and ESS: every draw comes
        from the state's key, so a state resumed with a new key moves afresh)."""
        return inner_state

    def init(
        self,
        rng_key: Array,
        num_warmup: int,
        init_params: Any,
        model_args: tuple[Any, ...],
        model_kwargs: dict[str, Any],
    ) -> EnsembleSamplerState:
        num_chains = rng_key.shape[0]
        if num_chains % 2:
            raise AssertionError(
                f"Number of chains must be even (got num_chains={num_chains}): "
                f"{type(self).__name__} updates each half of the walkers from the other."
            )
        self._num_chains = num_chains
        self._num_warmup = num_warmup
        key, key_inner, key_init = random.split(rng_key[0], 3)
        if init_params is None:
            find = partial(
                self.initial_params,
                init_params=None,
                model_args=model_args,
                model_kwargs=model_kwargs,
                validate_grad=False,
            )
            z = jax.vmap(lambda k: find(k).z)(random.split(key_init, num_chains))
        else:
            z = dict(init_params) if isinstance(init_params, Mapping) else init_params
            for leaf in jax.tree_util.tree_leaves(z):
                if jnp.shape(leaf)[:1] != (num_chains,):
                    raise AssertionError(
                        "The batch dimension of each param must match n_chains "
                        f"({num_chains}, one value per walker); got shape {jnp.shape(leaf)}."
                    )
        potential = self.get_potential_fn(model_args, model_kwargs)
        log_density = -jax.vmap(potential)(z)
        return EnsembleSamplerState(z, self.init_inner_state(key_inner), key, log_density)

    def check_init(
        self,
        state: EnsembleSamplerState,
        model_args: tuple[Any, ...],
        model_kwargs: dict[str, Any],
    ) -> EnsembleSamplerState:
        dim = int(ravel_pytree(jax.tree_util.tree_map(lambda x: x[0], state.z))[0].size)
        num_chains = int(np.shape(state.log_density)[0])
        if num_chains < 2 * dim:
            warnings.warn(
                "Setting n_chains to at least 2*n_params is strongly recommended.\n"
                f"n_chains: {num_chains}, n_params: {dim}",
                UserWarning,
                stacklevel=4,
            )
        valid = np.isfinite(np.asarray(state.log_density))
        if valid.all():
            return state
        # Walkers whose first start is not finite search again (compiled only then).
        bad = np.flatnonzero(~valid)
        keys = random.split(random.fold_in(jnp.asarray(state.rng_key), 1), bad.size)
        infos = self.search_starts(keys, model_args, model_kwargs, validate_grad=False)

        def put(old: Any, new: Any) -> Any:
            return jnp.asarray(old).at[bad].set(new)

        z = jax.tree_util.tree_map(put, state.z, infos.z)
        return state._replace(z=z, log_density=put(state.log_density, -infos.potential_energy))

    def sample(
        self,
        state: EnsembleSamplerState,
        model_args: tuple[Any, ...],
        model_kwargs: dict[str, Any],
    ) -> EnsembleSamplerState:
        potential = self.get_potential_fn(model_args, model_kwargs)
        rng_key, key_split, key_inner = random.split(state.rng_key, 3)
        flat, unravel, unravel_one = _batch_ravel(state.z)

        def logdensity_fn(x: Array) -> Array:
            return -potential(unravel_one(x))

        # NumPyro's attribute, for subclasses written against its API (this trace's).
        self._batch_log_density = jax.vmap(logdensity_fn)
        log_density = state.log_density
        if log_density is None:  # a state built by hand, NumPyro's three fields
            log_density = self._batch_log_density(flat)

        def update(active: Array, ld: Array, inactive: Array, inner: Any) -> Any:
            return self._update(active, ld, inactive, inner, logdensity_fn)

        flat, log_density, inner = ensemble_step(
            key_split,
            flat,
            log_density,
            self._fresh_inner(state.inner_state, key_inner),
            update,
            randomize_split=self._randomize_split,
        )
        return EnsembleSamplerState(unravel(flat), inner, rng_key, log_density)


class _KeyedEnsemble(EnsembleSampler):
    """AIES and ESS: the inner state is a NamedTuple with the ``rng_key`` every draw comes
    from, and :meth:`_update` (which carries the walkers' log densities) does the work."""

    def _fresh_inner(self, inner_state: Any, rng_key: Array) -> Any:
        return inner_state._replace(rng_key=rng_key)

    def update_active_chains(
        self, active: Array, inactive: Array, inner_state: Any
    ) -> tuple[Array, Any]:
        assert self._batch_log_density is not None, "call sample (or init) first"
        fn = self._batch_log_density
        new, _, inner_state = self._update(
            active, fn(active), inactive, inner_state, lambda x: fn(x[None])[0]
        )
        return new, inner_state


class AIES(_KeyedEnsemble):
    """Affine-invariant ensemble sampling (emcee's moves; NumPyro's ``AIES``):
    gradient-free Metropolis-Hastings whose proposals come from the other walkers.

    Needs ``num_chains`` even, at least twice the latent dimension; all chains form one
    ensemble, so every ``chain_method`` runs them together.

    Args:
        model: the model (or give ``potential_fn``).
        potential_fn: minus the log density of unconstrained parameters (then
            ``MCMC.run`` needs ``init_params`` with a leading ``num_chains`` dim).
        randomize_split: permute the walkers before splitting them in halves.
        moves: ``{move: probability}`` of :meth:`DEMove` and :meth:`StretchMove`
            (normalised; default ``{AIES.DEMove(): 1.0}``).
        init_strategy: where walkers start (:func:`plait.infer.init_to_uniform`, ...).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import AIES, MCMC
        >>> def model():
        ...     x = sample("x", dist.Normal().expand([3]).to_event(1))
        ...     sample("obs", dist.Normal(x, 1.0).to_event(1), obs=jnp.ones(3))
        >>> kernel = AIES(model, moves={AIES.DEMove(): 0.5, AIES.StretchMove(): 0.5})
        >>> mcmc = MCMC(kernel, num_warmup=500, num_samples=500, num_chains=10,
        ...             chain_method="vectorized", progress_bar=False)
        >>> mcmc.run(jax.random.key(0))
        >>> bool(jnp.all(jnp.abs(mcmc.get_samples()["x"].mean(0) - 0.5) < 0.15))
        True
    """

    DEMove: ClassVar[type[DEMove]] = DEMove
    StretchMove: ClassVar[type[StretchMove]] = StretchMove

    def __init__(
        self,
        model: Callable[..., Any] | None = None,
        potential_fn: Callable[[Any], Array] | None = None,
        randomize_split: bool = False,
        moves: Mapping[Any, float] | None = None,
        init_strategy: InitStrategy = init_to_uniform,
    ) -> None:
        super().__init__(
            model, potential_fn, randomize_split=randomize_split, init_strategy=init_strategy
        )
        self._moves, self._weights = _weights(
            moves, DEMove(), "AIES.DEMove(), or AIES.StretchMove()"
        )

    def init_inner_state(self, rng_key: Array) -> AIESState:
        zero = jnp.zeros((), jnp.result_type(float))
        return AIESState(zero, zero, zero, rng_key)

    def _update(
        self,
        active: Array,
        log_density: Array,
        inactive: Array,
        inner_state: AIESState,
        logdensity_fn: Callable[[Array], Array],
    ) -> tuple[Array, Array, AIESState]:
        return aies_update(
            active,
            log_density,
            inactive,
            inner_state,
            batch_log_density=jax.vmap(logdensity_fn),
            moves=self._moves,
            weights=self._weights,
            num_warmup=self._num_warmup,
        )

    def get_diagnostics_str(self, state: EnsembleSamplerState) -> str:
        return f"acc. prob={float(state.inner_state.mean_accept_prob):.2f}"


class ESS(_KeyedEnsemble):
    """Ensemble slice sampling (Karamanis & Beutler 2021; NumPyro's ``ESS``):
    gradient-free slice sampling along directions drawn from the other walkers
    (BlackJAX's slice kernel: stepping out, then shrinkage).

    Needs ``num_chains`` even, at least twice the latent dimension. With ``tune_mu``,
    the scale of the directions is tuned after every step from the numbers of
    expansions and contractions (as NumPyro, also after warm-up).

    Args:
        model: the model (or give ``potential_fn``).
        potential_fn: minus the log density of unconstrained parameters (then
            ``MCMC.run`` needs ``init_params`` with a leading ``num_chains`` dim).
        randomize_split: permute the walkers before splitting them in halves.
        moves: ``{move: probability}`` of :meth:`DifferentialMove` (the default),
            :meth:`GaussianMove`, :meth:`KDEMove` and :meth:`RandomMove` (normalised).
        max_steps: the most stepping-out steps of one slice.
        max_iter: the most shrinkage steps of one slice (then the walker stays).
        init_mu: the initial scale of the directions.
        tune_mu: tune the scale.
        init_strategy: where walkers start (:func:`plait.infer.init_to_uniform`, ...).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import ESS, MCMC
        >>> def model():
        ...     x = sample("x", dist.Normal().expand([3]).to_event(1))
        ...     sample("obs", dist.Normal(x, 1.0).to_event(1), obs=jnp.ones(3))
        >>> mcmc = MCMC(ESS(model), num_warmup=300, num_samples=300, num_chains=10,
        ...             chain_method="vectorized", progress_bar=False)
        >>> mcmc.run(jax.random.key(0))
        >>> bool(jnp.all(jnp.abs(mcmc.get_samples()["x"].mean(0) - 0.5) < 0.15))
        True
    """

    DifferentialMove: ClassVar[type[DifferentialMove]] = DifferentialMove
    GaussianMove: ClassVar[type[GaussianMove]] = GaussianMove
    KDEMove: ClassVar[type[KDEMove]] = KDEMove
    RandomMove: ClassVar[type[RandomMove]] = RandomMove

    def __init__(
        self,
        model: Callable[..., Any] | None = None,
        potential_fn: Callable[[Any], Array] | None = None,
        randomize_split: bool = True,
        moves: Mapping[Any, float] | None = None,
        max_steps: int = 10_000,
        max_iter: int = 10_000,
        init_mu: float = 1.0,
        tune_mu: bool = True,
        init_strategy: InitStrategy = init_to_uniform,
    ) -> None:
        super().__init__(
            model, potential_fn, randomize_split=randomize_split, init_strategy=init_strategy
        )
        self._moves, self._weights = _weights(
            moves,
            DifferentialMove(),
            "ESS.DifferentialMove(), ESS.GaussianMove(), ESS.KDEMove(), ESS.RandomMove()",
        )
        if init_mu <= 0:
            raise AssertionError(
                f"Scale factor should be strictly positive; got init_mu={init_mu}."
            )
        self._max_steps = max_steps
        self._max_iter = max_iter
        self._init_mu = init_mu
        self._tune_mu = tune_mu

    def init_inner_state(self, rng_key: Array) -> ESSState:
        zero = jnp.zeros((), jnp.int32)
        mu = jnp.asarray(self._init_mu, jnp.result_type(float))
        return ESSState(jnp.zeros((), jnp.result_type(float)), zero, zero, mu, rng_key)

    def _update(
        self,
        active: Array,
        log_density: Array,
        inactive: Array,
        inner_state: ESSState,
        logdensity_fn: Callable[[Array], Array],
    ) -> tuple[Array, Array, ESSState]:
        return ess_update(
            active,
            log_density,
            inactive,
            inner_state,
            logdensity_fn=logdensity_fn,
            moves=self._moves,
            weights=self._weights,
            max_steps=self._max_steps,
            max_iter=self._max_iter,
            tune_mu=self._tune_mu,
        )
