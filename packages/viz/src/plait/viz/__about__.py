"""Version of plait-viz."""

__version__ = "0.1.0"
