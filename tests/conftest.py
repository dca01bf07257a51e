"""Collection settings for the cross-package tests."""

from __future__ import annotations

# Scripts that mypy checks (tests/test_typing.py); one of them is wrong on purpose.
collect_ignore = ["typing"]
