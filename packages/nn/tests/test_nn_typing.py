"""``mypy --strict`` accepts a typed use of plait.nn and sees the network's result type."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TYPED = Path(__file__).with_name("typed_nn.py")

MISUSE = """
from __future__ import annotations
import jax.numpy as jnp
from plait.nn import module
from typed_nn import dense_apply, dense_init

net = module("net", (dense_init, dense_apply), input_shape=(-1, 3))
reveal_type(net)
wrong: str = net(jnp.ones((2, 3)))
module("net", 3)
"""


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str]:
    pytest.importorskip("mypy")
    tmp = tmp_path_factory.mktemp("mypy")
    misuse = tmp / "misuse_nn.py"
    misuse.write_text(MISUSE)
    src = [ROOT / "packages" / p / "src" for p in ("core", "handlers", "nn")]
    env = dict(os.environ, MYPYPATH=os.pathsep.join([*map(str, src), str(TYPED.parent)]))
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--strict",
        "--namespace-packages",
        "--explicit-package-bases",
        "--cache-dir",
        str(tmp / "cache"),
        "--no-error-summary",
        str(TYPED),
        str(misuse),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    return done.returncode, done.stdout + done.stderr


def test_typed_script_passes_mypy_strict(mypy_output: tuple[int, str]) -> None:
    _, out = mypy_output
    assert "typed_nn.py" not in out, out


def test_mypy_sees_the_bound_networks_result_type(mypy_output: tuple[int, str]) -> None:
    code, out = mypy_output
    assert code == 1, out
    assert 'Revealed type is "def (*Any, **Any) -> jax._src.basearray.Array"' in out, out
    assert 'expression has type "Array", variable has type "str"' in out, out
    assert 'Argument 2 to "module" has incompatible type "int"' in out, out
