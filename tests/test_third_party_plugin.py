"""A plugin shipped as its own package (examples/plait-plugin-example) is installed and
discovered through the ``plait`` entry point, with nothing registered by hand."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plait-plugin-example"

CHECK = """
import jax, numpyro.distributions as dist, plait
from plait.handlers import seed, trace
from plait_temper import Gaussian, temper

infos = {info.name: info for info in plait.plugins()}
assert infos["temper"].distribution == "plait-temper", infos
x = seed(lambda: plait.sample("x", Gaussian(3.0, 0.001)), rng_seed=0)()
assert abs(float(x) - 3.0) < 0.01, x
def model():
    plait.sample("y", dist.Normal(0.0, 1.0), obs=1.0)
assert trace(temper(model, temperature=2.0)).get_trace()["y"].scale == 0.5
print("discovered", sorted(infos))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the example's wheel and install it into a fresh folder (a pure-Python wheel
    installs by unpacking; its dist-info carries the entry point)."""
    if importlib.util.find_spec("hatchling") is None:
        pytest.skip("hatchling is needed to build the example plugin")
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(wheels)],
        cwd=EXAMPLE,
        check=True,
        capture_output=True,
        timeout=300,
    )
    target = tmp_path_factory.mktemp("site")
    (wheel,) = wheels.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


def test_installed_third_party_plugin_is_discovered_and_works(installed: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(installed), *sys.path])
    result = subprocess.run(
        [sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "temper" in result.stdout
