"""A plait trace reads as NumPyro's: ``site["value"]``, ``site.get("infer")``, ``"fn" in site``.

The same model is traced by both libraries under the same seed; every key NumPyro's
message dicts hold reads the same from plait's messages, and NumPyro's own trace-reading
code (``numpyro.util.format_shapes``) runs unchanged on a plait trace.
"""

from __future__ import annotations

import re
from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import numpyro.handlers
import numpyro.util
import pytest

import plait
import plait.handlers


def model(lib: Any, y: Any) -> None:
    w = lib.param("w", jnp.ones(3))
    mu = lib.sample("mu", dist.Normal(0.0, 1.0))
    lib.deterministic("shift", mu + w.sum())
    with lib.plate("data", 3):
        z = lib.sample("z", dist.Bernoulli(0.4), infer={"enumerate": "parallel"})
        lib.sample("y", dist.Normal(mu * w + z, 1.0), obs=y)


Y = jnp.array([0.5, -0.2, 1.3])


def traces() -> tuple[dict[str, Any], plait.Trace]:
    theirs = numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace(numpyro, Y)
    ours = plait.handlers.trace(plait.handlers.seed(model, 0)).get_trace(plait, Y)
    return theirs, ours


def _same(a: Any, b: Any) -> bool:
    if hasattr(a, "dim") and hasattr(a, "size"):  # a plate frame, a named tuple in NumPyro
        return tuple(a) == tuple(b) and (a.name, a.dim, a.size) == (b.name, b.dim, b.size)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if a is None or isinstance(a, bool | str | int | float):
        return a == b or (a is None and b is None)
    if hasattr(a, "batch_shape"):  # a distribution
        return type(a) is type(b) and a.batch_shape == b.batch_shape
    if callable(a):
        return callable(b)
    return np.array_equal(np.asarray(a), np.asarray(b))


def test_every_numpyro_key_reads_the_same_from_a_plait_message() -> None:
    theirs, ours = traces()
    assert list(theirs) == list(ours)
    for name, their_site in theirs.items():
        site = ours[name]
        for key, value in their_site.items():
            if key == "kwargs":  # the key each library drew for the site is its own
                value = {k: v for k, v in value.items() if k != "rng_key"}
                assert _same(value, {k: v for k, v in site[key].items() if k != "rng_key"})
                continue
            assert key in site, (name, key)
            assert _same(value, site[key]), (name, key, value, site[key])
            assert _same(value, site.get(key)), (name, key)


def test_numpyros_trace_reading_code_runs_on_a_plait_trace() -> None:
    theirs, ours = traces()
    expected = numpyro.util.format_shapes(theirs, compute_log_prob=True)
    assert numpyro.util.format_shapes(ours, compute_log_prob=True) == expected
    assert "y dist" in expected and "log_prob" in expected


def test_the_dict_view_holds_numpyros_keys_and_is_typed_data() -> None:
    _, ours = traces()
    site = ours["y"]
    assert dict(site)["value"] is site.value
    assert set(dict(site)) == {
        "type", "name", "fn", "args", "kwargs", "value", "scale", "is_observed",
        "intermediates", "cond_indep_stack", "infer", "mask", "stop", "done",
    }  # fmt: skip
    assert site.get("log_prob") is None and site.get("log_prob", 0.0) == 0.0
    assert "log_prob" not in site and "value" in site
    assert site["infer"] is site.infer and site["infer"].get("enumerate") is None
    assert ours["z"]["infer"] == {"enumerate": "parallel"}


def test_unknown_keys_are_a_key_error_that_says_what_to_read() -> None:
    _, ours = traces()
    with pytest.raises(KeyError, match=re.escape("msg.fn.log_prob(msg.value)")):
        ours["y"]["log_prob"]  # type: ignore[call-overload]
    with pytest.raises(KeyError, match=re.escape("read msg.stash")):
        ours["y"]["stash"]  # type: ignore[call-overload]
