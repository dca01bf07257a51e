"""The typed API as an IDE sees it: mypy --strict accepts real use and rejects misuse."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    shutil.which("mypy") is None and not __import__("importlib").util.find_spec("mypy"),
    reason="mypy is not installed",
)


def _mypy(*paths: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--no-incremental",
            *paths,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_typed_user_script_passes_strict_mypy() -> None:
    result = _mypy("tests/typing/typed_model.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_misuse_is_reported_with_the_real_signatures() -> None:
    result = _mypy("tests/typing/wrong_use.py")
    assert result.returncode == 1
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert any("wrong_use.py:16" in e and '"str"' in e and '"Array"' in e for e in errors), errors
    assert any("wrong_use.py:17" in e and '"scale"' in e and '"float"' in e for e in errors), errors
    assert any("wrong_use.py:18" in e and '"int"' in e for e in errors), errors
    # Reached through ``import plait`` alone, a subpackage keeps its types.
    assert any("wrong_use.py:19" in e and '"Array"' in e for e in errors), errors
    # Trace sites read with NumPyro's keys are typed per key; a wrong key is an error.
    assert any("wrong_use.py:21" in e and '"__getitem__" of "Message"' in e for e in errors)
    assert any("wrong_use.py:22" in e and '"str"' in e and '"int"' in e for e in errors), errors
