"""The kernel protocol: what :class:`plait.infer.MCMC` drives.

NumPyro's ``MCMCKernel`` (``init`` / ``sample`` / ``postprocess_fn`` / ``sample_field`` /
``default_fields`` / ``get_diagnostics_str``), adapted to compiled chains:

* ``init`` and ``sample`` are **traced**: MCMC compiles them once per model structure and
  argument signature, maps them over chains (``vmap``, ``shard_map`` over devices, or one
  chain after another), and runs ``sample`` inside a compiled loop. They must be pure JAX
  functions of their arguments: no Python branching on array values, no side effects,
  nothing traced kept on ``self``. ``model_args`` / ``model_kwargs`` may be tracers.
* Python-level work (tracing the model once to read its structure, warnings, errors
  that name a site) goes in :meth:`MCMCKernel.prepare`, which MCMC calls with the
  concrete arguments before every run; what it returns joins MCMC's compile-cache key.
* A state is a pytree with a ``rng_key`` field: ``sample`` draws its randomness from
  ``state.rng_key`` and stores the next key there, so a run resumed from
  ``mcmc.last_state`` continues the very chain a longer run would have drawn.
* Warm-up belongs to the kernel: ``init`` receives ``num_warmup`` and the kernel adapts
  while its iteration counter is below it (as NumPyro's HMC does with ``state.i``). MCMC
  only counts steps, so ``post_warmup_state`` skips warm-up by starting from a state
  whose counter is past it.
* Extra fields are attributes of the state (dotted paths: ``"adapt_state.step_size"``),
  gathered inside the compiled loop.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["MCMCKernel", "StateT"]

StateT = TypeVar("StateT")
"""The type of a kernel's state (a pytree, usually a ``NamedTuple`` with ``rng_key``)."""


def _identity(x: Any) -> Any:
    return x


class MCMCKernel(abc.ABC, Generic[StateT]):
    """A Markov transition kernel that :class:`plait.infer.MCMC` runs (NumPyro's
    ``MCMCKernel``, with traced ``init`` and ``sample``).

    Subclasses implement :meth:`init`, :meth:`sample` and :attr:`sample_field`; the rest
    has defaults. MCMC calls, per run: :meth:`prepare` (Python, concrete arguments),
    then ``init`` (compiled, one chain at a time under ``vmap``, or the whole ensemble
    when :attr:`is_ensemble_kernel`), then :meth:`check_init` (Python, on the initial
    states of all chains; it returns the states to start from), then ``sample``
    ``num_warmup + num_samples`` times in a compiled loop, then :meth:`postprocess_fn`
    (compiled) on the collected ``sample_field`` values.

    Example:
        A random-walk Metropolis kernel on a potential (NumPyro's own example):

        >>> from typing import Any, NamedTuple
        >>> import jax, jax.numpy as jnp
        >>> from plait.infer import MCMC, MCMCKernel
        >>> class MHState(NamedTuple):
        ...     u: Any
        ...     rng_key: Any
        >>> class MetropolisHastings(MCMCKernel[MHState]):
        ...     sample_field = "u"
        ...     def __init__(self, potential_fn, step_size=0.1):
        ...         self.potential_fn, self.step_size = potential_fn, step_size
        ...     def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        ...         return MHState(init_params, rng_key)
        ...     def sample(self, state, model_args, model_kwargs):
        ...         key, k_prop, k_acc = jax.random.split(state.rng_key, 3)
        ...         u = state.u
        ...         prop = u + self.step_size * jax.random.normal(k_prop, u.shape)
        ...         log_accept = self.potential_fn(u) - self.potential_fn(prop)
        ...         accept = jnp.log(jax.random.uniform(k_acc)) < log_accept
        ...         return MHState(jnp.where(accept, prop, u), key)
        >>> kernel = MetropolisHastings(lambda x: ((x - 2.0) ** 2).sum(), step_size=0.5)
        >>> mcmc = MCMC(kernel, num_warmup=500, num_samples=2000, progress_bar=False)
        >>> mcmc.run(jax.random.key(0), init_params=jnp.array([1.0, 2.0]))
        >>> bool(jnp.all(jnp.abs(mcmc.get_samples().mean(0) - 2.0) < 0.2))
        True
    """

    # -- what MCMC reads -----------------------------------------------------------------
    @property
    @abc.abstractmethod
    def sample_field(self) -> str:
        """The attribute of the state holding the draw (``"z"`` for HMC): collected,
        post-processed, and reported by ``print_summary``."""

    @property
    def default_fields(self) -> tuple[str, ...]:
        """The state attributes collected on every run (besides ``extra_fields``)."""
        return (self.sample_field,)

    @property
    def is_ensemble_kernel(self) -> bool:
        """Whether the chains are one ensemble (AIES, ESS): then :meth:`init` receives the
        batch of ``num_chains`` keys and :meth:`sample` advances all chains together, and
        MCMC needs ``chain_method="vectorized"``."""
        return False

    @property
    def model(self) -> Callable[..., Any] | None:
        """The model the kernel samples, or ``None`` for a kernel on a potential."""
        return None

    # -- Python-level steps --------------------------------------------------------------
    def prepare(
        self, rng_key: Any, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> Hashable:
        """Read what the compiled functions need from the model, before each run.

        Called by MCMC in Python with the concrete arguments (never traced). Trace the
        model here, raise errors that name a site, and warn as NumPyro warns. Whatever
        ``init`` / ``sample`` / ``postprocess_fn`` capture from this call as constants
        must be reflected in the returned value: MCMC adds it to the key of its cache of
        compiled programs (default: ``()``, nothing captured).
        """
        return ()

    def check_init(
        self, state: StateT, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> StateT:
        """The initial state to start from: ``state`` (with a leading chain axis,
        concrete) as it is, repaired (chains whose start is unusable started elsewhere),
        or a clear error. Called in Python after ``init``; ``init`` may thus make one
        cheap attempt and leave retries to this method. Default: ``state``."""
        return state

    # -- traced steps --------------------------------------------------------------------
    @abc.abstractmethod
    def init(
        self,
        rng_key: Any,
        num_warmup: int,
        init_params: Any,
        model_args: tuple[Any, ...],
        model_kwargs: dict[str, Any],
    ) -> StateT:
        """The initial state of one chain (traced).

        Args:
            rng_key: this chain's key (for an ensemble kernel: the ``(num_chains,)`` keys).
            num_warmup: the number of warm-up steps (a Python int): adapt while the
                state's iteration counter is below it.
            init_params: the starting point given to ``MCMC.run`` (for a model: values on
                the unconstrained space by site name), or ``None``: choose one.
            model_args: the model's positional arguments (possibly tracers).
            model_kwargs: its keyword arguments.
        """

    @abc.abstractmethod
    def sample(
        self, state: StateT, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> StateT:
        """The next state (traced): one transition, warm-up adaptation included while the
        state's counter is below ``num_warmup``. Take randomness from ``state.rng_key``
        and return the next key in the new state."""

    def postprocess_fn(
        self, model_args: tuple[Any, ...], model_kwargs: dict[str, Any]
    ) -> Callable[[Any], Any]:
        """A function from one draw of :attr:`sample_field` to what ``get_samples``
        returns (constrained values and deterministic sites); traced. Default: identity."""
        return _identity

    # -- host-side helpers ---------------------------------------------------------------
    def with_rng_key(self, state: StateT, rng_key: Any) -> StateT:
        """``state`` drawing from ``rng_key`` next (resuming from ``post_warmup_state``).
        Default: ``state._replace(rng_key=rng_key)``."""
        return state._replace(rng_key=rng_key)  # type: ignore[attr-defined,no-any-return]

    def get_diagnostics_str(self, state: StateT) -> str:
        """A short text for the progress bar, from one chain's state (concrete)."""
        return ""
