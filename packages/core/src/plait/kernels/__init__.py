"""JAX kernels shared by plait's plugins: chain contractions, semiring einsums, Kalman filters.

Pure functions of arrays, compiled under the caller's ``jax.jit``. Strategies and
other options are static keyword arguments. See ``README.md`` in this folder.
"""

from plait.kernels._backward import shared_backward as shared_backward
from plait.kernels._chain import auto_strategy as auto_strategy
from plait.kernels._chain import chain_filter as chain_filter
from plait.kernels._chain import chain_logsumexp as chain_logsumexp
from plait.kernels._chain import chain_max as chain_max
from plait.kernels._einsum import logsumexp_einsum as logsumexp_einsum
from plait.kernels._einsum import max_einsum as max_einsum
from plait.kernels._kalman import kalman_filter as kalman_filter
from plait.kernels._kalman import kalman_sample as kalman_sample
from plait.kernels._kalman import kalman_smoother as kalman_smoother
from plait.kernels._kalman_types import AffineGaussian as AffineGaussian
from plait.kernels._kalman_types import GaussianPath as GaussianPath
from plait.kernels._kalman_types import KalmanFilterResult as KalmanFilterResult
from plait.kernels._kalman_types import KalmanSmootherResult as KalmanSmootherResult
from plait.kernels._kalman_types import KalmanStrategy as KalmanStrategy
from plait.kernels._mode import chain_mode as chain_mode
from plait.kernels._sample import chain_sample as chain_sample
from plait.kernels._semiring import log_matmul as log_matmul
from plait.kernels._semiring import max_matmul as max_matmul
from plait.kernels._types import ChainPath as ChainPath
from plait.kernels._types import ChainResult as ChainResult
from plait.kernels._types import FactoredSteps as FactoredSteps
from plait.kernels._types import FilterResult as FilterResult
from plait.kernels._types import Semiring as Semiring
from plait.kernels._types import Steps as Steps
from plait.kernels._types import Strategy as Strategy

__all__ = [
    "AffineGaussian",
    "ChainPath",
    "ChainResult",
    "FactoredSteps",
    "FilterResult",
    "GaussianPath",
    "KalmanFilterResult",
    "KalmanSmootherResult",
    "KalmanStrategy",
    "Semiring",
    "Steps",
    "Strategy",
    "auto_strategy",
    "chain_filter",
    "chain_logsumexp",
    "chain_max",
    "chain_mode",
    "chain_sample",
    "kalman_filter",
    "kalman_sample",
    "kalman_smoother",
    "log_matmul",
    "logsumexp_einsum",
    "max_einsum",
    "max_matmul",
    "shared_backward",
]
