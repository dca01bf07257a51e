"""plait-enum: exact enumeration of discrete latent variables, without funsor.

``enum`` lays each enumerated site's support on a fresh dim left of the plates and
``markov`` recycles those dims; :func:`log_density` sums enumerated sites out by tensor
variable elimination over plates in log space; an enumerated ``scan`` is summed out by a
time-parallel chain contraction (``plait.kernels``); :func:`infer_discrete` draws the
discrete sites from their posterior (forward-filter backward-sample) or finds their MAP
(Viterbi), ``scan`` of any length included.

Example:
    >>> import jax.numpy as jnp
    >>> import numpyro.distributions as dist
    >>> from plait import sample
    >>> from plait.enum import config_enumerate, log_density
    >>> @config_enumerate
    ... def model():
    ...     z = sample("z", dist.Bernoulli(0.25))
    ...     sample("y", dist.Normal(z, 1.0), obs=1.0)
    >>> value, _ = log_density(model)
    >>> round(float(value), 4)
    -1.2686
"""

from plait.enum.__about__ import __version__ as __version__
from plait.enum._enum import config_enumerate as config_enumerate
from plait.enum._enum import enum as enum
from plait.enum._infer_discrete import infer_discrete as infer_discrete
from plait.enum._log_density import log_density as log_density
from plait.enum._markov import markov as markov

__all__ = [
    "__version__",
    "config_enumerate",
    "enum",
    "infer_discrete",
    "log_density",
    "markov",
]
