"""plait-gaussian: linear-Gaussian latent chains of a ``scan``, integrated out exactly.

:class:`collapse` finds, from a ``scan`` body's traced computation, the latent Gaussian
sites whose means are affine in the previous step's latents, and integrates them out
with the Kalman kernels of :mod:`plait.kernels` (``kalman_filter``, ``kalman_smoother``,
``kalman_sample``); :func:`smooth` gives their posterior marginals, and
``Predictive(collapse(model), ...)`` exact draws of their paths.
"""

from plait.gaussian.__about__ import __version__ as __version__
from plait.gaussian._collapse import collapse as collapse
from plait.gaussian._run import Marginal as Marginal
from plait.gaussian._smooth import smooth as smooth

__all__ = ["Marginal", "__version__", "collapse", "smooth"]
