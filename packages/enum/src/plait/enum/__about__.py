"""Version of plait-enum."""

__version__ = "0.1.0"
