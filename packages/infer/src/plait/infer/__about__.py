"""Version of plait-infer."""

__version__ = "0.1.0"
