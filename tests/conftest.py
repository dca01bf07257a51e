"""Shared fixtures for the cross-package tests."""

from __future__ import annotations

import os

# Several simulated CPU devices for the sharding tests (set before jax initialises).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

# Scripts that mypy checks (tests/test_typing.py); one of them is wrong on purpose.
collect_ignore = ["typing"]
