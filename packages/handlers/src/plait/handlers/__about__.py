"""Version of plait-handlers."""

__version__ = "0.1.0"
