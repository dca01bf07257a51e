"""Automatic guides (NumPyro's ``numpyro.infer.autoguide``).

Each autoguide reads its model's latents off one prototype run and fits a family of
distributions to them:

* site by site: :class:`AutoNormal` (mean-field Normal), :class:`AutoDelta` (MAP);
* over the whole flattened latent space (:class:`AutoContinuous`):
  :class:`AutoDiagonalNormal`, :class:`AutoMultivariateNormal`,
  :class:`AutoLowRankMultivariateNormal`, :class:`AutoLaplaceApproximation`, the batched
  :class:`AutoBatchedMultivariateNormal` and :class:`AutoBatchedLowRankMultivariateNormal`,
  the flows :class:`AutoIAFNormal` and :class:`AutoBNAFNormal`, and annealed importance
  sampling :class:`AutoDAIS`, :class:`AutoSurrogateLikelihoodDAIS`;
* :class:`AutoSemiDAIS` (global guide, DAIS for the local latents of a subsampled plate);
* :class:`AutoGuideList`, which combines autoguides and hand-written guides for parts
  of a model.

Example:
    >>> import jax, optax
    >>> import numpyro.distributions as dist
    >>> from plait import sample
    >>> from plait.infer import SVI, Trace_ELBO
    >>> from plait.infer.autoguide import AutoMultivariateNormal
    >>> def model():
    ...     sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    >>> guide = AutoMultivariateNormal(model)
    >>> result = SVI(model, guide, optax.adam(0.05), Trace_ELBO()).run(
    ...     jax.random.key(0), 10, progress_bar=False)
    >>> guide.sample_posterior(jax.random.key(1), result.params, sample_shape=(5,))["x"].shape
    (5, 2)
"""

from plait.infer.autoguide._base import AutoGuide as AutoGuide
from plait.infer.autoguide._batched import (
    AutoBatchedLowRankMultivariateNormal as AutoBatchedLowRankMultivariateNormal,
)
from plait.infer.autoguide._batched import (
    AutoBatchedMultivariateNormal as AutoBatchedMultivariateNormal,
)
from plait.infer.autoguide._continuous import AutoContinuous as AutoContinuous
from plait.infer.autoguide._dais import AutoDAIS as AutoDAIS
from plait.infer.autoguide._dais import AutoSurrogateLikelihoodDAIS as AutoSurrogateLikelihoodDAIS
from plait.infer.autoguide._flows import AutoBNAFNormal as AutoBNAFNormal
from plait.infer.autoguide._flows import AutoIAFNormal as AutoIAFNormal
from plait.infer.autoguide._gaussian import AutoDiagonalNormal as AutoDiagonalNormal
from plait.infer.autoguide._gaussian import (
    AutoLowRankMultivariateNormal as AutoLowRankMultivariateNormal,
)
from plait.infer.autoguide._gaussian import AutoMultivariateNormal as AutoMultivariateNormal
from plait.infer.autoguide._guide_list import AutoGuideList as AutoGuideList
from plait.infer.autoguide._laplace import AutoLaplaceApproximation as AutoLaplaceApproximation
from plait.infer.autoguide._mean_field import AutoDelta as AutoDelta
from plait.infer.autoguide._mean_field import AutoNormal as AutoNormal
from plait.infer.autoguide._semi_dais import AutoSemiDAIS as AutoSemiDAIS

__all__ = [
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
]
