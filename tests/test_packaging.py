"""Each package builds on its own into a wheel that holds only its own subpackage."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent for p in (ROOT / "packages").glob("*/pyproject.toml"))

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("hatchling") is None, reason="hatchling is not installed"
)


def _build(package: Path, out: Path) -> zipfile.ZipFile:
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)],
        cwd=package,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_wheel_contains_only_its_own_subpackage(package: Path, tmp_path: Path) -> None:
    wheel = _build(package, tmp_path)
    modules = [n for n in wheel.namelist() if not n.split("/")[0].endswith(".dist-info")]
    assert modules, "the wheel is empty"
    if package.name == "core":
        assert "plait/__init__.py" in modules
        assert "plait/py.typed" in modules
        plugin_dirs = {"handlers", "control_flow", "enum", "nn", "infer", "gaussian", "viz"}
        assert not [n for n in modules if n.split("/")[1] in plugin_dirs]
    else:
        name = package.name.replace("-", "_")
        assert all(n.startswith(f"plait/{name}/") for n in modules), modules
        assert f"plait/{name}/py.typed" in modules
        entry_points = next(n for n in wheel.namelist() if n.endswith("entry_points.txt"))
        assert f"plait.{name}._plugin" in wheel.read(entry_points).decode()
