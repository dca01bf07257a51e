"""Reparameterisers (NumPyro's ``numpyro.infer.reparam``), used with the
``plait.handlers.reparam`` handler; they act inside ``scan`` bodies as on the unrolled
loop.

* :class:`LocScaleReparam` (re-exported from :mod:`plait.handlers`): decentring.
* :class:`TransformReparam`, :class:`ExplicitReparam`: sample a base or transformed
  space.
* :class:`HaarReparam`, :class:`DiscreteCosineReparam` (:class:`UnitJacobianReparam`):
  time-like event axes in a frequency basis.
* :class:`CircularReparam`, :class:`ProjectedNormalReparam`: the circle and the sphere.
* :class:`NeuTraReparam`: the latent space warped by a trained ``AutoContinuous`` guide.

Example:
    >>> import numpyro.distributions as dist
    >>> from plait import sample
    >>> from plait.handlers import reparam, seed, trace
    >>> from plait.infer.reparam import LocScaleReparam
    >>> model = lambda: sample("x", dist.Normal(1.0, 2.0))
    >>> list(trace(seed(reparam(model, config={"x": LocScaleReparam(0.0)}), 0)).get_trace())
    ['x_decentered', 'x']
"""

from plait.handlers import LocScaleReparam as LocScaleReparam
from plait.infer.reparam._base import Reparam as Reparam
from plait.infer.reparam._circular import CircularReparam as CircularReparam
from plait.infer.reparam._circular import ProjectedNormalReparam as ProjectedNormalReparam
from plait.infer.reparam._neutra import NeuTraReparam as NeuTraReparam
from plait.infer.reparam._transform import DiscreteCosineReparam as DiscreteCosineReparam
from plait.infer.reparam._transform import ExplicitReparam as ExplicitReparam
from plait.infer.reparam._transform import HaarReparam as HaarReparam
from plait.infer.reparam._transform import TransformReparam as TransformReparam
from plait.infer.reparam._transform import UnitJacobianReparam as UnitJacobianReparam

__all__ = [
    "CircularReparam",
    "DiscreteCosineReparam",
    "ExplicitReparam",
    "HaarReparam",
    "LocScaleReparam",
    "NeuTraReparam",
    "ProjectedNormalReparam",
    "Reparam",
    "TransformReparam",
    "UnitJacobianReparam",
]
