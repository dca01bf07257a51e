"""plait-infer: log densities, Predictive, SVI on optax or numpyro.optim with NumPyro's
ELBOs, autoguides (:mod:`plait.infer.autoguide`) and reparameterisers
(:mod:`plait.infer.reparam`), MCMC kernels on BlackJAX (NUTS, HMC, BarkerMH, SA, AIES,
ESS, the Gibbs kernels), ArviZ export."""

from plait.infer import autoguide as autoguide
from plait.infer import reparam as reparam
from plait.infer._adaptation import HMCAdaptState as HMCAdaptState
from plait.infer._barker import BarkerMH as BarkerMH
from plait.infer._compile_cache import enable_compilation_cache as enable_compilation_cache
from plait.infer._diagnostics import effective_sample_size as effective_sample_size
from plait.infer._diagnostics import hpdi as hpdi
from plait.infer._diagnostics import split_gelman_rubin as split_gelman_rubin
from plait.infer._diagnostics import summary as summary
from plait.infer._elbo import ELBO as ELBO
from plait.infer._elbo import Trace_ELBO as Trace_ELBO
from plait.infer._elbo_enum import TraceEnum_ELBO as TraceEnum_ELBO
from plait.infer._elbo_graph import TraceGraph_ELBO as TraceGraph_ELBO
from plait.infer._elbo_mean_field import TraceMeanField_ELBO as TraceMeanField_ELBO
from plait.infer._elbo_renyi import RenyiELBO as RenyiELBO
from plait.infer._ensemble import AIES as AIES
from plait.infer._ensemble import ESS as ESS
from plait.infer._ensemble import EnsembleSampler as EnsembleSampler
from plait.infer._ensemble_step import EnsembleSamplerState as EnsembleSamplerState
from plait.infer._gibbs import DiscreteHMCGibbs as DiscreteHMCGibbs
from plait.infer._gibbs import HMCGibbs as HMCGibbs
from plait.infer._gibbs import HMCGibbsState as HMCGibbsState
from plait.infer._hmc import HMCState as HMCState
from plait.infer._hmc import hmc as hmc
from plait.infer._hmc_kernel import HMC as HMC
from plait.infer._init import init_to_feasible as init_to_feasible
from plait.infer._init import init_to_mean as init_to_mean
from plait.infer._init import init_to_median as init_to_median
from plait.infer._init import init_to_sample as init_to_sample
from plait.infer._init import init_to_uniform as init_to_uniform
from plait.infer._init import init_to_value as init_to_value
from plait.infer._kernel import MCMCKernel as MCMCKernel
from plait.infer._log_density import log_density as log_density
from plait.infer._log_density import potential_energy as potential_energy
from plait.infer._log_probs import compute_log_probs as compute_log_probs
from plait.infer._log_probs import log_likelihood as log_likelihood
from plait.infer._mcmc import MCMC as MCMC
from plait.infer._mixed_hmc import MixedHMC as MixedHMC
from plait.infer._model import initialize_model as initialize_model
from plait.infer._nuts import NUTS as NUTS
from plait.infer._predictive import Predictive as Predictive
from plait.infer._sa import SA as SA
from plait.infer._svi import SVI as SVI
from plait.infer._svi import SVIRunResult as SVIRunResult
from plait.infer._svi import SVIState as SVIState
from plait.infer._transforms import constrain_fn as constrain_fn
from plait.infer._transforms import get_transforms as get_transforms
from plait.infer._transforms import transform_fn as transform_fn
from plait.infer._transforms import unconstrain_fn as unconstrain_fn
from plait.infer._util import ModelInfo as ModelInfo
from plait.infer._util import ParamInfo as ParamInfo
from plait.infer.autoguide import (
    AutoBatchedLowRankMultivariateNormal as AutoBatchedLowRankMultivariateNormal,
)
from plait.infer.autoguide import AutoBatchedMultivariateNormal as AutoBatchedMultivariateNormal
from plait.infer.autoguide import AutoBNAFNormal as AutoBNAFNormal
from plait.infer.autoguide import AutoContinuous as AutoContinuous
from plait.infer.autoguide import AutoDAIS as AutoDAIS
from plait.infer.autoguide import AutoDelta as AutoDelta
from plait.infer.autoguide import AutoDiagonalNormal as AutoDiagonalNormal
from plait.infer.autoguide import AutoGuide as AutoGuide
from plait.infer.autoguide import AutoGuideList as AutoGuideList
from plait.infer.autoguide import AutoIAFNormal as AutoIAFNormal
from plait.infer.autoguide import AutoLaplaceApproximation as AutoLaplaceApproximation
from plait.infer.autoguide import AutoLowRankMultivariateNormal as AutoLowRankMultivariateNormal
from plait.infer.autoguide import AutoMultivariateNormal as AutoMultivariateNormal
from plait.infer.autoguide import AutoNormal as AutoNormal
from plait.infer.autoguide import AutoSemiDAIS as AutoSemiDAIS
from plait.infer.autoguide import AutoSurrogateLikelihoodDAIS as AutoSurrogateLikelihoodDAIS

__all__ = [
    "MixedHMC",
    "DiscreteHMCGibbs",
    "HMCGibbs",
    "HMCGibbsState",
    "AIES",
    "ESS",
    "EnsembleSampler",
    "EnsembleSamplerState",
    "BarkerMH",
    "ELBO",
    "HMC",
    "HMCAdaptState",
    "HMCState",
    "MCMC",
    "MCMCKernel",
    "NUTS",
    "SA",
    "SVI",
    "AutoBNAFNormal",
    "AutoBatchedLowRankMultivariateNormal",
    "AutoBatchedMultivariateNormal",
    "AutoContinuous",
    "AutoDAIS",
    "AutoDelta",
    "AutoDiagonalNormal",
    "AutoGuide",
    "AutoGuideList",
    "AutoIAFNormal",
    "AutoLaplaceApproximation",
    "AutoLowRankMultivariateNormal",
    "AutoMultivariateNormal",
    "AutoNormal",
    "AutoSemiDAIS",
    "AutoSurrogateLikelihoodDAIS",
    "Predictive",
    "RenyiELBO",
    "SVIRunResult",
    "SVIState",
    "TraceEnum_ELBO",
    "TraceGraph_ELBO",
    "TraceMeanField_ELBO",
    "Trace_ELBO",
    "autoguide",
    "ModelInfo",
    "ParamInfo",
    "compute_log_probs",
    "constrain_fn",
    "effective_sample_size",
    "enable_compilation_cache",
    "get_transforms",
    "hmc",
    "hpdi",
    "init_to_feasible",
    "init_to_mean",
    "init_to_median",
    "init_to_sample",
    "init_to_uniform",
    "init_to_value",
    "initialize_model",
    "log_density",
    "log_likelihood",
    "potential_energy",
    "reparam",
    "split_gelman_rubin",
    "summary",
    "transform_fn",
    "unconstrain_fn",
]
