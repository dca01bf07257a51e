"""The adapters without their library: a clear ImportError naming the extra."""

from __future__ import annotations

import re
import subprocess
import sys

import jax.numpy as jnp
import numpyro.distributions as dist
import pytest

from plait.nn import eqx_module, flax_nnx_module, random_eqx_module, random_flax_nnx_module


def test_importing_plait_nn_imports_neither_flax_nor_equinox():
    code = "import sys, plait.nn; print(sorted({'flax', 'equinox'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "call",
    [
        lambda: flax_nnx_module("net", lambda x: x),
        lambda: random_flax_nnx_module("net", lambda x: x, dist.Normal(0.0, 1.0)),
    ],
)
def test_flax_adapter_without_flax_names_the_extra(monkeypatch, call):
    monkeypatch.setitem(sys.modules, "flax", None)
    monkeypatch.setitem(sys.modules, "flax.nnx", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'plait-nn[flax]'")):
        call()


@pytest.mark.parametrize(
    "call",
    [
        lambda: eqx_module("net", jnp.ones(2)),
        lambda: random_eqx_module("net", jnp.ones(2), dist.Normal(0.0, 1.0)),
    ],
)
def test_equinox_adapter_without_equinox_names_the_extra(monkeypatch, call):
    monkeypatch.setitem(sys.modules, "equinox", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'plait-nn[equinox]'")):
        call()
