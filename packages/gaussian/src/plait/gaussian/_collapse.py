"""``collapse``: linear-Gaussian chains of a ``scan`` integrated out by a Kalman filter."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

import jax
import jax.numpy as jnp
from jax import random

from plait import Message, Messenger, get_mask, isolated_stack
from plait.control_flow.plugin_api import ScanCall, ScanResult
from plait.errors import SiteError
from plait.gaussian._dists import gaussian_kind, sample_dtype
from plait.gaussian._held import HeldSite
from plait.gaussian._run import SMOOTHED, Mode, run_chain
from plait.gaussian._step import trace_step
from plait.gaussian._structure import ChainPlan, Drop, classify
from plait.handlers import seed

__all__ = ["collapse"]

P = ParamSpec("P")
R = TypeVar("R")

_MAX_DROPS = 64
_SKIPPED_INIT = r".*skipping initialization of site '.*' which already stores a value"


def find_chain(call: ScanCall, held: dict[int, HeldSite]) -> ChainPlan | None:
    """The chain of ``call``'s body, tracing again without the sites it cannot take."""
    key_aval = None
    if call.rng_key is not None:
        key_aval = jax.eval_shape(lambda k: random.split(k)[1], call.rng_key)
    init_leaves = jax.tree_util.tree_leaves(call.init)
    excluded: frozenset[str] = frozenset()
    for _ in range(_MAX_DROPS):
        with warnings.catch_warnings():
            # The placeholders are values only inside this analysis trace: an init
            # strategy acting in the loop (NUTS, SVI) would warn that it skips them.
            warnings.filterwarnings("ignore", _SKIPPED_INIT, UserWarning)
            traced = trace_step(call, key_aval, excluded)
        found = classify(traced, call.name, held, init_leaves)
        if not isinstance(found, Drop):
            return found
        if not found.names or found.names <= excluded:
            return None
        excluded |= found.names
    return None


class collapse(Messenger[P, R]):
    """Integrate linear-Gaussian latent chains of ``scan`` bodies out, by a Kalman filter.

    In every ``scan`` it reaches, the latent ``Normal`` / ``MultivariateNormal`` sites
    of the body whose mean is affine in the previous step's latents (through the carry)
    and in the step's inputs, and whose scale does not depend on them, are integrated
    out together with the chain's initial Gaussian site (a latent sampled before the
    scan whose value is the scan's initial carry); observed Gaussian sites whose mean is
    affine in them become the Kalman likelihood (masks and missing values included). The
    decision is exact, read from the traced step (see ``plait.gaussian``'s README). The
    log density then holds the chain's exact marginal likelihood as one factor site,
    named after the chain's first site, and the collapsed sites are not latent sites any
    more: ``MCMC(NUTS(collapse(model)))`` and SVI run over the other sites only.
    Under :class:`plait.infer.Predictive` (``seed`` with the log density masked out)
    the collapsed sites are drawn from their exact posterior given the observations
    (forward-filter backward-sample), as if they had been sampled.

    A site opts out with ``infer={"collapse": False}``; ``infer={"collapse": True}``
    makes a site that cannot be collapsed an error naming the operation at fault.
    ``infer={"contraction": "sequential" | "associative" | "auto"}`` on a chain site picks
    the Kalman strategy (``"auto"``: sequential on CPU).

    As a wrapper, ``collapse(model)`` first traces the model once abstractly to find
    the initial sites of its chains. As a context manager it cannot look ahead: there,
    only initial sites marked ``infer={"collapse": True}`` are integrated out (the
    others stay sampled, and the chain starts from their value).

    Args:
        fn: the model.

    Example:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.control_flow import scan
        >>> from plait.gaussian import collapse
        >>> from plait.infer import log_density
        >>> def walk(y):
        ...     def step(x_prev, y_t):
        ...         x = sample("x", dist.Normal(x_prev, 1.0))
        ...         sample("y", dist.Normal(x, 1.0), obs=y_t)
        ...         return x, None
        ...     x0 = sample("x_0", dist.Normal(0.0, 1.0))
        ...     scan(step, x0, y)
        >>> value, tr = log_density(collapse(walk), (jnp.array([0.5, 1.0, 0.2]),), {}, {})
        >>> round(float(value), 4), list(tr)
        (-4.4617, ['x_0'])
    """

    @overload
    def __init__(self: collapse[..., Any], fn: None = None) -> None: ...
    @overload
    def __init__(self, fn: Callable[P, R]) -> None: ...
    def __init__(self, fn: Callable[P, R] | None = None) -> None:
        self._held: dict[int, HeldSite] = {}
        self._initial: frozenset[str] = frozenset()
        self._probing = False
        self._consumed: set[str] = set()
        super().__init__(fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        fn = self.fn
        if fn is None:
            return super().__call__(*args, **kwargs)
        run = self._fresh(_initial_sites(fn, args, kwargs))
        with run:
            return fn(*args, **kwargs)

    def _fresh(self, initial: frozenset[str]) -> collapse[P, R]:
        new = copy.copy(self)
        new._held, new._initial, new._consumed = {}, initial, set()
        return new

    def __enter__(self) -> Any:
        self._held, self._consumed = {}, set()
        return super().__enter__()

    def __exit__(self, exc_type: object, exc_value: object, traceback: object) -> None:
        super().__exit__(exc_type, exc_value, traceback)
        held, self._held = self._held, {}
        if exc_type is not None or self._probing:
            return
        for site in held.values():
            if site.consumed_by is None:
                raise SiteError(
                    site.name,
                    f"site '{site.name}' was held back by plait.gaussian.collapse as the "
                    "initial state of a collapsed chain, but no collapsed scan started from it "
                    "in this run (a handler outside collapse may have given the chain's sites "
                    f"values). Mark it infer={{'collapse': False}} to keep it sampled.",
                )

    # -- initial sites ---------------------------------------------------------------------
    def process_sample(self, msg: Message) -> None:
        if msg.is_observed or msg.value is not None or msg.kwargs.get("sample_shape"):
            return
        option = msg.infer.get("collapse")
        if option is False:
            return
        name = msg.name or ""
        if not (self._probing or option is True or name in self._initial):
            return
        kind = gaussian_kind(msg.fn)
        if kind is None or kind[1]:
            if option is True:
                what = "masked" if kind is not None else f"a {type(msg.fn).__name__}"
                raise SiteError(
                    name,
                    f"site '{name}' asks to be collapsed (infer={{'collapse': True}}) but its "
                    f"distribution is {what}: only unmasked Normal and MultivariateNormal "
                    "latent sites can be integrated out.",
                )
            return
        dtype = sample_dtype(msg.fn)
        shape = tuple(msg.fn.batch_shape) + tuple(msg.fn.event_shape)
        msg.value = jnp.zeros(shape, dtype)
        msg.stop = True
        self._held[id(msg.value)] = HeldSite(
            name, msg.value, msg.fn, tuple(msg.cond_indep_stack), msg.scale, msg.infer
        )

    # -- scans -----------------------------------------------------------------------------
    def run_scan(self, call: ScanCall, proceed: Callable[[ScanCall], ScanResult]) -> ScanResult:
        """Integrate the body's linear-Gaussian chain out (see the class docstring); a scan
        without one runs as it would without ``collapse``."""
        if call.length == 0:
            return proceed(call)
        plan = find_chain(call, self._held)
        if plan is None:
            return proceed(call)
        for site in plan.initial.values():
            if site.consumed_by is not None:
                raise SiteError(
                    site.name,
                    f"site '{site.name}' is the initial value of two collapsed chains (scans "
                    f"'{site.consumed_by}' and '{call.name}'); one latent cannot start two "
                    "chains that are integrated out separately. Give each scan its own initial "
                    "site, or mark it infer={'collapse': False}.",
                )
            site.consumed_by = call.name
            self._consumed.add(site.name)
        if self._probing:
            return proceed(call)
        return run_chain(call, proceed, plan, self._mode(call))

    def _mode(self, call: ScanCall) -> Mode:
        if SMOOTHED.get() is not None:
            return "smooth"
        if call.rng_key is not None and get_mask() is False:
            return "predict"
        return "density"


def _initial_sites(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> frozenset[str]:
    """The sites outside every loop that start a collapsed chain: found by running the
    model once abstractly (``jax.eval_shape``), alone, holding back every latent Gaussian
    site and seeing which of them a collapsed scan starts from."""
    prober: collapse[..., Any] = collapse()
    prober._probing = True

    def run() -> None:
        with isolated_stack(), seed(rng_seed=0), prober:
            fn(*args, **kwargs)

    jax.eval_shape(run)
    return frozenset(prober._consumed)
