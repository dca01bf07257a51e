"""A foreign 'distribution' record that plait learns to sample through the adapter hook."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gaussian:
    """A normal distribution written as a plain record (not a plait Distribution)."""

    mean: float
    std: float
