"""``import plait`` reaches every installed subpackage, as ``import numpyro`` does.

Subpackages are imported on first access (``import plait`` imports none of them), and a
missing one is an ``AttributeError`` that names the distribution to install.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import numpyro
import pytest

import plait

SCRIPT = textwrap.dedent(
    """
    import sys
    import plait

    plugins = ("control_flow", "enum", "handlers", "infer", "kernels", "nn")
    eager = [m for m in sys.modules if m.startswith("plait.") and m.split(".")[1] in plugins]
    assert not eager, eager
    condition, nuts = plait.handlers.condition, plait.infer.NUTS
    assert "plait.handlers" in sys.modules and "plait.infer" in sys.modules
    assert "plait.nn" not in sys.modules
    assert plait.kernels.auto_strategy and plait.control_flow.scan and plait.enum.markov
    print(condition.__name__, nuts.__name__)
    """
)


def test_subpackages_are_attributes_of_plait_imported_on_first_access() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["condition", "NUTS"]


def test_plait_has_the_subpackage_attributes_numpyro_has() -> None:
    for name in ("handlers", "infer"):
        assert getattr(numpyro, name).__name__ == f"numpyro.{name}"
        assert getattr(plait, name).__name__ == f"plait.{name}"


def test_a_missing_subpackage_names_the_distribution_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(plait, "nn", raising=False)
    monkeypatch.setitem(sys.modules, "plait.nn", None)  # as if plait-nn were not installed
    with pytest.raises(AttributeError, match=re.escape("pip install plait-nn")):
        plait.nn  # noqa: B018
    assert not hasattr(plait, "nn")
    with pytest.raises(AttributeError, match=re.escape("pip install plait-gaussian")):
        plait.gaussian  # type: ignore[attr-defined]  # noqa: B018


def test_other_names_are_plain_attribute_errors() -> None:
    with pytest.raises(AttributeError, match=re.escape("module 'plait' has no attribute 'nope'")):
        plait.nope  # type: ignore[attr-defined]  # noqa: B018
    assert not hasattr(plait, "_private") and not hasattr(plait, "a.b")


def test_dir_lists_the_installed_subpackages() -> None:
    names = dir(plait)
    assert {"handlers", "infer", "kernels", "sample"} <= set(names)
    assert "gaussian" not in names
