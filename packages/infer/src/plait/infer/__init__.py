"""plait-infer: log densities, Predictive, SVI on optax, NUTS on BlackJAX, ArviZ export."""

from plait.infer._autoguide import AutoDelta as AutoDelta
from plait.infer._autoguide import AutoGuide as AutoGuide
from plait.infer._autoguide import AutoNormal as AutoNormal
from plait.infer._compile_cache import enable_compilation_cache as enable_compilation_cache
from plait.infer._diagnostics import effective_sample_size as effective_sample_size
from plait.infer._diagnostics import hpdi as hpdi
from plait.infer._diagnostics import split_gelman_rubin as split_gelman_rubin
from plait.infer._diagnostics import summary as summary
from plait.infer._elbo import ELBO as ELBO
from plait.infer._elbo import Trace_ELBO as Trace_ELBO
from plait.infer._elbo import TraceEnum_ELBO as TraceEnum_ELBO
from plait.infer._init import init_to_feasible as init_to_feasible
from plait.infer._init import init_to_mean as init_to_mean
from plait.infer._init import init_to_median as init_to_median
from plait.infer._init import init_to_sample as init_to_sample
from plait.infer._init import init_to_uniform as init_to_uniform
from plait.infer._init import init_to_value as init_to_value
from plait.infer._log_density import log_density as log_density
from plait.infer._log_density import potential_energy as potential_energy
from plait.infer._mcmc import MCMC as MCMC
from plait.infer._nuts import NUTS as NUTS
from plait.infer._predictive import Predictive as Predictive
from plait.infer._svi import SVI as SVI
from plait.infer._svi import SVIRunResult as SVIRunResult
from plait.infer._svi import SVIState as SVIState
from plait.infer._transforms import constrain_fn as constrain_fn
from plait.infer._transforms import get_transforms as get_transforms
from plait.infer._transforms import transform_fn as transform_fn
from plait.infer._transforms import unconstrain_fn as unconstrain_fn
from plait.infer._util import ModelInfo as ModelInfo
from plait.infer._util import ParamInfo as ParamInfo
from plait.infer._util import initialize_model as initialize_model

__all__ = [
    "ELBO",
    "MCMC",
    "NUTS",
    "SVI",
    "AutoDelta",
    "AutoGuide",
    "AutoNormal",
    "Predictive",
    "SVIRunResult",
    "SVIState",
    "TraceEnum_ELBO",
    "Trace_ELBO",
    "ModelInfo",
    "ParamInfo",
    "constrain_fn",
    "effective_sample_size",
    "enable_compilation_cache",
    "get_transforms",
    "hpdi",
    "init_to_feasible",
    "init_to_mean",
    "init_to_median",
    "init_to_sample",
    "init_to_uniform",
    "init_to_value",
    "initialize_model",
    "log_density",
    "potential_energy",
    "split_gelman_rubin",
    "summary",
    "transform_fn",
    "unconstrain_fn",
]
