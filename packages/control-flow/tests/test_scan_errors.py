"""``scan``'s errors are instances of the builtin classes NumPyro's ``scan`` raises on the
same input (through ``lax.scan``), and stay :class:`plait.PlaitError`s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import pytest
from numpyro.contrib.control_flow import scan as numpyro_scan
from numpyro.handlers import seed as numpyro_seed

from plait import PlaitError
from plait.control_flow import scan
from plait.handlers import seed

CASES: dict[str, Callable[[Callable[..., Any]], Any]] = {
    "xs of different lengths": lambda s: s(lambda c, x: (c, x), 0.0, (jnp.zeros(3), jnp.zeros(4))),
    "length disagrees with xs": lambda s: s(lambda c, x: (c, x), 0.0, jnp.zeros(3), length=5),
    "no xs and no length": lambda s: s(lambda c, x: (c, x), 0.0, None),
    "a scalar leaf of xs": lambda s: s(lambda c, x: (c, x), 0.0, jnp.zeros(())),
    "the carry changes structure": lambda s: s(lambda c, x: ((c, c), x), 0.0, jnp.zeros(3)),
    "the carry changes shape": lambda s: s(lambda c, x: (jnp.zeros(2), x), 0.0, jnp.zeros(3)),
    "the body returns no pair": lambda s: s(lambda c, x: c, 0.0, jnp.zeros(3)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_scan_raises_numpyros_builtin_class(case: str) -> None:
    with pytest.raises(Exception) as theirs:
        numpyro_seed(lambda: CASES[case](numpyro_scan), 0)()
    builtin = next(k for k in type(theirs.value).__mro__ if k.__module__ == "builtins")
    with pytest.raises(builtin) as ours:
        seed(lambda: CASES[case](scan), rng_seed=0)()
    assert isinstance(ours.value, PlaitError) and "scan '" in str(ours.value)
