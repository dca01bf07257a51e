"""Version of plait-nn."""

__version__ = "0.1.0"
