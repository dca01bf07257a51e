"""NumPyro's start-of-script helpers: the same effect on JAX's and XLA's configuration."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpyro
import numpyro.distributions as dist
import pytest

import plait


@pytest.fixture
def jax_config() -> Iterator[None]:
    """Restore the JAX options the helpers change."""
    saved = {
        name: jax.config.values[name]
        for name in ("jax_enable_x64", "jax_platforms", "jax_platform_name")
    }
    try:
        yield
    finally:
        for name, value in saved.items():
            jax.config.update(name, value)


def _after(helper: Callable[..., None], *args: Any, option: str) -> Any:
    helper(*args)
    return jax.config.values[option]


@pytest.mark.usefixtures("jax_config")
@pytest.mark.parametrize(
    ("use_x64", "env"), [(True, None), (False, None), (False, "1"), (False, "true"), (True, "0")]
)
def test_enable_x64_sets_what_numpyros_sets(
    use_x64: bool, env: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if env is None:
        monkeypatch.delenv("JAX_ENABLE_X64", raising=False)
    else:
        monkeypatch.setenv("JAX_ENABLE_X64", env)
    theirs = _after(numpyro.enable_x64, use_x64, option="jax_enable_x64")
    jax.config.update("jax_enable_x64", not theirs)
    assert _after(plait.enable_x64, use_x64, option="jax_enable_x64") is theirs


@pytest.mark.usefixtures("jax_config")
def test_enable_x64_false_reads_a_false_environment_as_false(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # NumPyro's bool(os.getenv("JAX_ENABLE_X64", 0)) turns "0" on; JAX reads it as off.
    monkeypatch.setenv("JAX_ENABLE_X64", "0")
    assert _after(numpyro.enable_x64, False, option="jax_enable_x64") is True
    assert _after(plait.enable_x64, False, option="jax_enable_x64") is False


@pytest.mark.usefixtures("jax_config")
@pytest.mark.parametrize("platform", ["cpu", "cpu,cuda", None])
def test_set_platform_sets_what_numpyros_sets(
    platform: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # JAX is running already, so the option changes without moving any computation.
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    monkeypatch.delenv("JAX_PLATFORM_NAME", raising=False)
    theirs = _after(numpyro.set_platform, platform, option="jax_platforms")
    jax.config.update("jax_platforms", None)
    assert _after(plait.set_platform, platform, option="jax_platforms") == theirs
    assert theirs == (platform or "cpu")


@pytest.mark.usefixtures("jax_config")
def test_set_platform_honours_the_deprecated_variable_with_numpyros_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    monkeypatch.setenv("JAX_PLATFORM_NAME", "cpu")
    with pytest.warns(UserWarning, match="`JAX_PLATFORM_NAME` is deprecated") as theirs:
        numpyro.set_platform()
    with pytest.warns(UserWarning, match="`JAX_PLATFORM_NAME` is deprecated") as ours:
        plait.set_platform()
    assert str(ours[0].message) == str(theirs[0].message)
    assert jax.config.values["jax_platform_name"] == "cpu"


@pytest.mark.parametrize("platform", ["gpu", "cpu,nope"])
def test_invalid_platform_is_an_assertion_error_as_in_numpyro(platform: str) -> None:
    with pytest.raises(AssertionError, match="Invalid platform"):
        numpyro.set_platform(platform)
    with pytest.raises(plait.ConfigError, match="invalid platform") as error:
        plait.set_platform(platform)
    assert isinstance(error.value, AssertionError) and isinstance(error.value, ValueError)


@pytest.mark.parametrize(
    "flags",
    [
        None,
        "",
        "--xla_cpu_enable_fast_math=false",
        "--xla_force_host_platform_device_count=8 --xla_cpu_enable_fast_math=false",
    ],
)
def test_set_host_device_count_writes_numpyros_xla_flags(
    flags: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def run(helper: Callable[[int], None]) -> str:
        if flags is None:
            monkeypatch.delenv("XLA_FLAGS", raising=False)
        else:
            monkeypatch.setenv("XLA_FLAGS", flags)
        helper(3)
        return os.environ["XLA_FLAGS"]

    assert run(plait.set_host_device_count) == run(numpyro.set_host_device_count)


def test_set_host_device_count_at_the_start_of_a_script_gives_that_many_devices() -> None:
    script = textwrap.dedent(
        """
        import plait
        plait.set_platform("cpu")
        plait.set_host_device_count(3)
        import jax
        print(len(jax.devices()))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"  # replaced, not added
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"


def _validates() -> bool:
    try:
        dist.Normal(0.0, -1.0)
    except ValueError:
        return True
    return False


def test_enable_validation_switches_numpyros_validation() -> None:
    initially = _validates()  # numpyro 0.22 validates by default
    try:
        plait.enable_validation()
        assert _validates()
        plait.enable_validation(False)
        assert not _validates()
        numpyro.enable_validation()
        with plait.validation_enabled(False):
            assert not _validates()
        assert _validates()  # the previous setting, numpyro's own, comes back
        with plait.validation_enabled():
            assert _validates()
    finally:
        numpyro.enable_validation(initially)
