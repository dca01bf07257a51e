"""plait-gaussian: linear-Gaussian latent chains of a ``scan``, integrated out exactly.

The Kalman filter, the RTS smoother and forward-filter backward-sample live in
:mod:`plait.kernels` (``kalman_filter``, ``kalman_smoother``, ``kalman_sample``);
this package decides, from a step's traced computation, which latent sites of a
``scan`` body form a linear-Gaussian chain and what their coefficients are.
"""

from plait.gaussian.__about__ import __version__ as __version__

__all__ = ["__version__"]
