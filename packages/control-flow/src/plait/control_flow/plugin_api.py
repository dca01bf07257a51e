"""The public contract for plugins that act on ``scan``: plait-enum, plait-gaussian and
third-party marginalisers or loop-aware handlers build on these names only.

A plugin acts on a scan in one of two ways:

* **As a handler that acts inside loop bodies**: override
  :meth:`plait.Messenger.for_control_flow` (plait-core) to return the handler's form for one
  step; it then sees every body site of every step, and not the stacked sites sent after
  the loop. Handlers that do not override it see the body's sites once, stacked over time
  after the loop (marked :data:`STACKED`).
* **As a handler that runs scans its own way**: give the handler a ``run_scan(call,
  proceed)`` method (:class:`ScanHandler`). It receives the :class:`ScanCall` (body,
  ``init``, ``xs``, ``length``, ``reverse``, ``history``, the loop's key, the handlers
  acting on the loop, the enclosing plates), runs the body with
  :meth:`ScanCall.run_step`, and returns a :class:`ScanResult`; or it calls
  ``proceed(call)`` to leave the scan to the next handler out, and finally to the plain
  loop (:meth:`ScanCall.run`).

:func:`split_trace` and :func:`stacked_sites` turn one traced step's sites into the stacked
sites a plugin returns; :func:`current_loop` is the loop step being traced now (for a
plugin's own nested-loop logic).

Example:
    >>> import jax.numpy as jnp
    >>> import numpyro.distributions as dist
    >>> from plait import Messenger, sample
    >>> from plait.control_flow import scan
    >>> from plait.control_flow.plugin_api import ScanCall, ScanResult
    >>> from plait.handlers import seed, trace
    >>> class last_step_only(Messenger):
    ...     '''Runs a scan's body once, on the last element (a toy marginaliser).'''
    ...     def run_scan(self, call: ScanCall, proceed) -> ScanResult:
    ...         x = jnp.asarray(call.xs)[-1]
    ...         step = call.run_step(call.init, x, index=jnp.asarray(call.length - 1))
    ...         return ScanResult(step.carry, step.output, step.trace)
    >>> def model():
    ...     def body(c, x):
    ...         return c + x, sample("y", dist.Normal(c, 1.0), obs=x)
    ...     return scan(body, 0.0, jnp.arange(4.0))
    >>> with trace() as tr, last_step_only():
    ...     carry, _ = model()
    >>> float(carry), list(tr)
    (3.0, ['y'])
"""

from plait.control_flow._body import StepResult as StepResult
from plait.control_flow._branch import BranchResult as BranchResult
from plait.control_flow._branch import BranchStep as BranchStep
from plait.control_flow._call import ScanCall as ScanCall
from plait.control_flow._call import ScanHandler as ScanHandler
from plait.control_flow._call import ScanResult as ScanResult
from plait.control_flow._cond_call import CondCall as CondCall
from plait.control_flow._cond_call import CondHandler as CondHandler
from plait.control_flow._cond_call import CondResult as CondResult
from plait.control_flow._select import BranchDistribution as BranchDistribution
from plait.control_flow._sites import ACCUMULATED as ACCUMULATED
from plait.control_flow._sites import PRIMITIVE as PRIMITIVE
from plait.control_flow._sites import STACKED as STACKED
from plait.control_flow._sites import LoopSite as LoopSite
from plait.control_flow._sites import SitePayload as SitePayload
from plait.control_flow._sites import SiteSkeleton as SiteSkeleton
from plait.control_flow._sites import split_trace as split_trace
from plait.control_flow._sites import stacked_sites as stacked_sites
from plait.control_flow._step import ScanContext as ScanContext
from plait.control_flow._step import current_loop as current_loop

__all__ = [
    "ACCUMULATED",
    "PRIMITIVE",
    "STACKED",
    "BranchDistribution",
    "BranchResult",
    "BranchStep",
    "CondCall",
    "CondHandler",
    "CondResult",
    "LoopSite",
    "ScanCall",
    "ScanContext",
    "ScanHandler",
    "ScanResult",
    "SitePayload",
    "SiteSkeleton",
    "StepResult",
    "current_loop",
    "split_trace",
    "stacked_sites",
]
