"""``HMC``: the Hamiltonian Monte Carlo kernel on a model or a potential.

NumPyro's ``HMC`` class on the functional :func:`plait.infer.hmc` (BlackJAX's
transitions, NumPyro's warm-up). :class:`plait.infer.NUTS` is its subclass.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, random

from plait.infer._hmc import HMCState, hmc, value_and_grad
from plait.infer._init import InitStrategy, init_to_uniform
from plait.infer._kernel import MCMCKernel
from plait.infer._model import PreparedModel, checked_init_params, prepare_model, shared_potential
from plait.infer._util import ParamInfo, find_valid_initial_params, raise_invalid_init

__all__ = ["HMC"]

DenseMass = bool | Sequence[tuple[str, ...]]


def _identity(x: Any) -> Any:
    return x


class HMC(MCMCKernel[HMCState]):
    """Hamiltonian Monte Carlo with a fixed trajectory length, Stan's warm-up of the step
    size and mass matrix (NumPyro's ``HMC``; BlackJAX's transition).

    Args:
        model: the model (or give ``potential_fn``).
        potential_fn: minus the log density of unconstrained parameters (then
            ``MCMC.run`` needs ``init_params``).
        kinetic_fn: ``kinetic_fn(inverse_mass_matrix, r)``; default Gaussian.
        step_size: the initial step size.
        inverse_mass_matrix: the initial inverse mass matrix: an array over the
            flattened latents, or (with a model) a dict of blocks keyed by tuples of
            site names.
        adapt_step_size: adapt the step size by dual averaging during warm-up.
        adapt_mass_matrix: adapt the mass matrix (Welford) during warm-up.
        dense_mass: a dense mass matrix (``True``), diagonal (``False``), or a list of
            tuples of site names, each a dense block (the rest diagonal).
        target_accept_prob: the acceptance rate the step size adaptation aims at.
        num_steps: a fixed number of leapfrog steps per transition.
        trajectory_length: the trajectory length (``num_steps = ceil(length / step)``).
        init_strategy: where chains start (:func:`plait.infer.init_to_uniform`, ...).
        find_heuristic_step_size: search a reasonable step size at the start of each
            adaptation window (Hoffman & Gelman's heuristic).
        forward_mode_differentiation: take gradients in forward mode (models with
            ``lax.while_loop``).
        regularize_mass_matrix: Stan's shrinkage of the estimated mass matrix.

    Example:
        >>> import jax
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import HMC, MCMC
        >>> def model():
        ...     sample("x", dist.Normal(1.0, 0.5))
        >>> kernel = HMC(model, num_steps=5, trajectory_length=None)
        >>> mcmc = MCMC(kernel, num_warmup=200, num_samples=400,
        ...             progress_bar=False)
        >>> mcmc.run(jax.random.key(0))
        >>> bool(abs(mcmc.get_samples()["x"].mean() - 1.0) < 0.15)
        True
    """

    _algo = "HMC"

    def __init__(
        self,
        model: Callable[..., Any] | None = None,
        potential_fn: Callable[[Any], Array] | None = None,
        kinetic_fn: Callable[[Any, Any], Array] | None = None,
        step_size: float = 1.0,
        inverse_mass_matrix: Any = None,
        adapt_step_size: bool = True,
        adapt_mass_matrix: bool = True,
        dense_mass: DenseMass = False,
        target_accept_prob: float = 0.8,
        num_steps: int | None = None,
        trajectory_length: float | None = 2 * math.pi,
        init_strategy: InitStrategy = init_to_uniform,
        find_heuristic_step_size: bool = False,
        forward_mode_differentiation: bool = False,
        regularize_mass_matrix: bool = True,
    ) -> None:
        if (model is None) == (potential_fn is None):
            raise ValueError(f"{type(self).__name__} needs exactly one of model and potential_fn.")
        if type(self) is HMC and num_steps is None and trajectory_length is None:
            raise ValueError("HMC needs num_steps or trajectory_length.")
        if not 0 < target_accept_prob < 1:
            raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob}.")
        if (
            type(self) is HMC
            and adapt_step_size
            and num_steps is not None
            and trajectory_length is not None
        ):
            warnings.warn(
                "If both `num_steps` and `trajectory_length` are specified step size can't "
                "be adapted",
                UserWarning,
                stacklevel=2,
            )
        self._model = model
        self._potential_fn = potential_fn
        self._kinetic_fn = kinetic_fn
        self._step_size = float(step_size)
        self._inverse_mass_matrix = inverse_mass_matrix
        self._adapt_step_size = adapt_step_size
        self._adapt_mass_matrix = adapt_mass_matrix
        self._dense_mass = dense_mass
        self._target_accept_prob = target_accept_prob
        self._num_steps = num_steps
        self._trajectory_length = None if trajectory_length is None else float(trajectory_length)
        self._max_tree_depth: int | tuple[int, int] = 10
        self._init_strategy = init_strategy
        self._find_heuristic_step_size = find_heuristic_step_size
        self._forward_mode_differentiation = forward_mode_differentiation
        self._regularize_mass_matrix = regularize_mass_matrix
        self._prepared: PreparedModel | None = None
        self._shared: dict[Any, tuple[Callable[..., Array], tuple[Any, ...]]] = {}
        self._num_warmup = 0
        if model is None:
            self._init_fn, self._sample_fn = hmc(
                potential_fn=potential_fn, kinetic_fn=kinetic_fn, algo=self._algo
            )
        else:
            self._init_fn, self._sample_fn = hmc(
                potential_fn_gen=self._potential_gen, kinetic_fn=kinetic_fn, algo=self._algo
            )

    def __repr__(self) -> str:
        target = self._model if self._model is not None else self._potential_fn
        name = getattr(target, "__name__", type(target).__name__)
        return f"{type(self).__name__}({name}, target_accept_prob={self._target_accept_prob})"

    # -- NumPyro's read-only attributes -------------------------------------------------
    @property
    def model(self) -> Callable[..., Any] | None:
        return self._model

    @property
    def sample_field(self) -> str:
        return "z"

    @property
    def default_fields(self) -> tuple[str, ...]:
        return ("z", "diverging", "potential_energy", "accept_prob", "num_steps")

    @property
    def init_strategy(self) -> InitStrategy:
        return self._init_strategy

    # -- the model's pieces ---------------------------------------------------------------
    def _require_prepared(self) -> PreparedModel:
        if self._prepared is None:
            raise RuntimeError(
                f"{type(self).__name__} has not read its model yet: call prepare(rng_key, "
                "model_args, model_kwargs) first (MCMC.run does)."
            )
        return self._prepared

    def _potential_gen(self, *model_args: Any, **model_kwargs: Any) -> Callable[[Any], Array]:
        """The potential for these arguments (one jitted function per run, so the model
        is traced once for the initial search and the sampler)."""
        return shared_potential(self._require_prepared(), self._shared, model_args, model_kwargs)

    def get_potential_fn(
        self, model_args: tuple[Any, ...] = (), model_kwargs: Mapping[str, Any] | None = None
    ) -> Callable[[Any], Array]:
        """The potential energy on the unconstrained space for these arguments."""
        if self._model is None:
            assert self._potential_fn is not None
            return self._potential_fn
        return self._potential_gen(*model_args, **dict(model_kwargs or {}))

    def get_constrain_fn(
        self, model_args: tuple[Any, ...] = (), model_kwargs: Mapping[str, Any] | None = None
    ) -> Callable[[Any], Any]:
        """Unconstrained latent values to constrained ones (and deterministic sites)."""
        return self.postprocess_fn(model_args, dict(model_kwargs or {}))

    # -- the protocol --------------------------------------------------------------------
    def prepare(
        self, rng_key: Any, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> Hashable:
        if self._model is None:
            return ()
        self._shared = {}
        self._prepared = prepare_model(
            rng_key,
            self._model,
            self._init_strategy,
            model_args,
            model_kwargs,
            algorithm=type(self).__name__,
            abstract=True,
        )
        return self._prepared.cache_key

    def _dense_mass_blocks(self, z: Any) -> DenseMass:
        dense = self._dense_mass
        if self._model is None or not isinstance(dense, bool):
            return dense
        # NumPyro's layout with a model: blocks keyed by sorted site names.
        return [tuple(sorted(z))] if dense else []

    def init(
        self,
        rng_key: Any,
        num_warmup: int,
        init_params: Any,
        model_args: tuple[Any, ...],
        model_kwargs: dict[str, Any],
    ) -> HMCState:
        rng_key, key_init = random.split(rng_key)
        if self._model is None:
            if init_params is None:
                raise ValueError(
                    "Valid value of `init_params` must be provided with `potential_fn`."
                )
            info = init_params
        else:
            prepared = self._require_prepared()
            if init_params is None:
                info, _ = find_valid_initial_params(
                    key_init,
                    prepared.model,
                    prepared.spec,
                    init_strategy=self._init_strategy,
                    model_args=model_args,
                    model_kwargs=model_kwargs,
                    forward_mode_differentiation=self._forward_mode_differentiation,
                    potential_fn=self._potential_gen(*model_args, **model_kwargs),
                    max_tries=1,  # check_init retries, so the compiled init has no loop
                )
            elif isinstance(init_params, ParamInfo):
                info = init_params
            else:
                z = checked_init_params(init_params, prepared.spec.shapes)
                pe, grad = value_and_grad(
                    self._potential_gen(*model_args, **model_kwargs),
                    z,
                    self._forward_mode_differentiation,
                )
                info = ParamInfo(z, pe, grad)
        z = info.z if isinstance(info, ParamInfo) else info
        self._num_warmup = num_warmup
        return self._init_fn(
            info,
            num_warmup,
            step_size=self._step_size,
            inverse_mass_matrix=self._inverse_mass_matrix,
            adapt_step_size=self._adapt_step_size,
            adapt_mass_matrix=self._adapt_mass_matrix,
            dense_mass=self._dense_mass_blocks(z),
            target_accept_prob=self._target_accept_prob,
            num_steps=self._num_steps,
            trajectory_length=self._trajectory_length,
            max_tree_depth=self._max_tree_depth,
            find_heuristic_step_size=self._find_heuristic_step_size,
            forward_mode_differentiation=self._forward_mode_differentiation,
            regularize_mass_matrix=self._regularize_mass_matrix,
            model_args=model_args,
            model_kwargs=model_kwargs,
            rng_key=rng_key,
        )

    def check_init(
        self, state: HMCState, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> HMCState:
        """Chains whose first start has a non-finite potential (or gradient) search again,
        up to 100 tries (compiled only then); no valid start is a clear error naming the
        site."""
        valid = _finite_start(state)
        if valid.all():
            return state
        if self._model is None:
            raise ValueError(
                "the potential energy (or its gradient) is not finite at init_params; start "
                "where potential_fn is finite."
            )
        prepared = self._require_prepared()
        bad = np.flatnonzero(~valid)
        keys = jax.vmap(lambda k: random.fold_in(k, 1))(jnp.asarray(state.rng_key)[bad])

        def search(key: Array) -> tuple[ParamInfo, Array]:
            return find_valid_initial_params(
                key,
                prepared.model,
                prepared.spec,
                init_strategy=self._init_strategy,
                model_args=model_args,
                model_kwargs=model_kwargs,
                forward_mode_differentiation=self._forward_mode_differentiation,
                potential_fn=self._potential_gen(*model_args, **model_kwargs),
            )

        infos, found = jax.jit(jax.vmap(search))(keys)
        if not np.asarray(found).all():
            raise_invalid_init(
                prepared.model, prepared.spec, infos, found, model_args, model_kwargs
            )

        def restart(key: Array, info: ParamInfo) -> HMCState:
            return self.init(key, self._num_warmup, info, model_args, model_kwargs)

        fresh = jax.jit(jax.vmap(restart))(keys, infos)
        return jax.tree_util.tree_map(  # type: ignore[no-any-return]
            lambda old, new: jnp.asarray(old).at[bad].set(new), state, fresh
        )

    def sample(
        self, state: HMCState, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> HMCState:
        return self._sample_fn(state, model_args, model_kwargs)

    def postprocess_fn(
        self, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> Callable[[Any], Any]:
        if self._model is None:
            return _identity
        prepared = self._require_prepared()
        return lambda z: prepared.postprocess(z, model_args, model_kwargs)

    def get_diagnostics_str(self, state: HMCState) -> str:
        return (
            f"{int(state.num_steps)} steps of size {float(state.adapt_state.step_size):.2e}. "
            f"acc. prob={float(state.mean_accept_prob):.2f}"
        )

    # -- for composite kernels (HMCGibbs) ------------------------------------------------
    def refresh(
        self, state: HMCState, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> HMCState:
        """``state`` with the potential energy and its gradient recomputed for these
        arguments (the chain does not move)."""
        pe, grad = value_and_grad(
            self.get_potential_fn(model_args, model_kwargs),
            state.z,
            self._forward_mode_differentiation,
        )
        return state._replace(potential_energy=pe, z_grad=grad)

    def wrap_model(self, wrapper: Callable[[Callable[..., Any]], Callable[..., Any]]) -> HMC:
        """A copy of this kernel on ``wrapper(model)`` (same settings)."""
        if self._model is None:
            raise ValueError("wrap_model needs a kernel built from a model, not from potential_fn.")
        kernel = copy.copy(self)
        kernel._model = wrapper(self._model)
        kernel._prepared = None
        kernel._shared = {}
        kernel._init_fn, kernel._sample_fn = hmc(
            potential_fn_gen=kernel._potential_gen, kinetic_fn=self._kinetic_fn, algo=self._algo
        )
        return kernel


def _finite_start(state: HMCState) -> np.ndarray:
    """Per chain: a finite potential and gradient at the start."""
    pe = np.asarray(state.potential_energy)
    valid = np.isfinite(pe).reshape(-1)
    for g in jax.tree_util.tree_leaves(state.z_grad):
        valid = valid & np.isfinite(np.asarray(g).reshape(valid.shape[0], -1)).all(-1)
    return np.asarray(valid, bool)
