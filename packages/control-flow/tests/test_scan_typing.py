"""``mypy --strict`` accepts a typed use of ``scan`` and rejects a wrong one."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1]
ROOT = PACKAGE.parents[1]


def test_typed_scan_passes_mypy_strict() -> None:
    pytest.importorskip("mypy")
    paths = [ROOT / "packages/core/src", ROOT / "packages/handlers/src", PACKAGE / "src"]
    env = {**os.environ, "MYPYPATH": os.pathsep.join(str(p) for p in paths)}
    config = (
        ["--config-file", str(ROOT / "pyproject.toml")]
        if (ROOT / "pyproject.toml").exists()
        else []
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--namespace-packages",
            "--explicit-package-bases",
            "--warn-unused-ignores",  # the deliberate error in wrong() must be reported
            "--cache-dir",
            str(Path(tempfile.gettempdir()) / "plait-control-flow-mypy-cache"),
            *config,
            str(PACKAGE / "tests" / "typed_scan.py"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
