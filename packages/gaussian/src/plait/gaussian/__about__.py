"""Version of plait-gaussian."""

__version__ = "0.1.0"
