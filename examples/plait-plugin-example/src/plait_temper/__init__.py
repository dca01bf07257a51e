"""plait-temper: a third-party plait plugin (a tempering handler and a distribution adapter)."""

from plait_temper._gaussian import Gaussian as Gaussian
from plait_temper._temper import temper as temper

__all__ = ["Gaussian", "temper"]
__version__ = "0.1.0"
