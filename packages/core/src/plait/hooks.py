"""Typed callers of plait's hooks, for packages that consume what plugins provide.

:mod:`plait.hookspecs` says what a plugin may implement; this module is how other code
asks: each function calls one hook of the plugin manager (loading the entry points on
first use) and returns its typed answer, ``None`` when no plugin answered. plait-infer
asks for log densities, enumerated guides and posterior draws of enumerated sites this
way, so it never imports a plugin by name.

Example:
    >>> import numpyro.distributions as dist
    >>> import plait
    >>> def model():
    ...     plait.sample("x", dist.Normal(0.0, 1.0), obs=0.0)
    >>> value, trace = plait.hooks.log_density(model, (), {}, {})
    >>> list(trace)
    ['x']
"""

from plait._plugins import adapt_distribution as adapt_distribution
from plait._plugins import enumerate_sites as enumerate_sites
from plait._plugins import infer_discrete as infer_discrete
from plait._plugins import log_density as log_density
from plait._plugins import log_factors as log_factors

__all__ = [
    "adapt_distribution",
    "enumerate_sites",
    "infer_discrete",
    "log_density",
    "log_factors",
]
