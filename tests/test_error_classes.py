"""Every plait error is an instance of the builtin class NumPyro raises on the same input.

Each case runs the same code under NumPyro and under plait (primitives, handlers and
networks taken from one namespace per library) and compares the exceptions.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import numpyro.handlers
import numpyro.infer.util
import pytest
from jax.example_libraries import stax

import plait
import plait.handlers
import plait.infer
import plait.nn


@dataclass(frozen=True)
class Lib:
    """One library's spelling of the names the cases use."""

    name: str
    p: Any
    h: Any
    log_density: Callable[..., Any]
    module: Callable[..., Any]


NUMPYRO = Lib("numpyro", numpyro, numpyro.handlers, numpyro.infer.util.log_density, numpyro.module)
PLAIT = Lib("plait", plait, plait.handlers, plait.infer.log_density, plait.nn.module)


def _run(lib: Lib, model: Callable[[], Any]) -> Any:
    return lib.h.trace(lib.h.seed(model, 0)).get_trace()


def _normal(lib: Lib, name: str = "x", **kwargs: Any) -> Any:
    return lib.p.sample(name, dist.Normal(0.0, 1.0), **kwargs)


def _plate_site(lib: Lib) -> None:
    with lib.p.plate("x", 3):
        pass


def _plates_on_one_dim(lib: Lib) -> None:
    with lib.p.plate("a", 2, dim=-1), lib.p.plate("b", 3, dim=-1):
        pass


CASES: dict[str, Callable[[Lib], Any]] = {
    # plait-core
    "handler wraps a non-callable (mask(False))": lambda lib: lib.h.mask(False),
    "seed wraps a non-callable": lambda lib: lib.h.seed(3, 0),
    "handler without a function called with arguments": lambda lib: lib.h.trace()(1, 2),
    "fn is not a distribution": lambda lib: _run(lib, lambda: lib.p.sample("z", object())),
    "sample without a key, no handler": lambda lib: _normal(lib),
    "sample without a key, under trace": lambda lib: lib.h.trace(lambda: _normal(lib)).get_trace(),
    "callable param init without seed": lambda lib: lib.p.param("w", lambda key: 1.0),
    "plate of size 0": lambda lib: lib.p.plate("p", 0),
    "plate of negative size": lambda lib: lib.p.plate("p", -2),
    "plate on a positive dim": lambda lib: lib.p.plate("p", 3, dim=0),
    "plate on a dim in use": lambda lib: _run(lib, lambda: _plates_on_one_dim(lib)),
    "subsampling plate without a key": lambda lib: lib.h.trace(
        lambda: lib.p.plate("p", 3, subsample_size=2)
    ).get_trace(),
    "plate_stack on a positive dim": lambda lib: _plate_stack_at(lib, 0),
    "batch shape that does not broadcast with the plate": lambda lib: _run(
        lib, lambda: _plated_sample(lib, dist.Normal(jnp.zeros(3), 1.0))
    ),
    "param of the wrong size in a subsampled plate": lambda lib: _run(
        lib, lambda: _subsampled(lib, lambda: lib.p.param("w", jnp.zeros(5), event_dim=0))
    ),
    "subsample of the wrong size": lambda lib: _run(
        lib, lambda: _subsampled(lib, lambda: lib.p.subsample(jnp.zeros(5), event_dim=0))
    ),
    "obs_mask that is not boolean": lambda lib: _run(
        lib, lambda: _normal(lib, "y", obs=jnp.zeros(2), obs_mask=jnp.ones(2, int))
    ),
    "observation that does not broadcast with the site": lambda lib: lib.log_density(
        lambda: lib.p.sample("y", dist.Normal(jnp.zeros(2), 1.0), obs=jnp.zeros(3)), (), {}, {}
    ),
    # plait-handlers
    "two sample sites of one name": lambda lib: _run(lib, lambda: [_normal(lib), _normal(lib)]),
    "a sample and a deterministic site of one name": lambda lib: _run(
        lib, lambda: lib.p.deterministic("x", _normal(lib))
    ),
    "mask that is not boolean": lambda lib: lib.h.mask(mask=jnp.ones(3)),
    "scale of zero": lambda lib: lib.h.scale(scale=0.0),
    "scale with a negative element": lambda lib: lib.h.scale(scale=jnp.array([1.0, -2.0])),
    "substitute with data and substitute_fn": lambda lib: lib.h.substitute(
        data={"x": 1.0}, substitute_fn=lambda msg: None
    ),
    "substitute with neither": lambda lib: lib.h.substitute(lambda: None),
    "condition with data and condition_fn": lambda lib: lib.h.condition(
        data={"x": 1.0}, condition_fn=lambda msg: None
    ),
    "substitute_fn that is not callable": lambda lib: _run(
        lib, lib.h.substitute(lambda: _normal(lib), substitute_fn=3)
    ),
    "condition_fn that is not callable": lambda lib: _run(
        lib, lib.h.condition(lambda: _normal(lib), condition_fn=3)
    ),
    "seed with a string": lambda lib: lib.h.seed(rng_seed="zero"),
    "seed with a float": lambda lib: lib.h.seed(rng_seed=1.5),
    "replay without a trace": lambda lib: lib.h.replay(lambda: None),
    "replay of an observed site onto a latent one": lambda lib: _run(
        lib, lib.h.replay(lambda: _normal(lib), trace=_run(lib, lambda: _normal(lib, obs=1.0)))
    ),
    "replay of a sample site onto a plate": lambda lib: _run(
        lib, lib.h.replay(lambda: _plate_site(lib), trace=_run(lib, lambda: _normal(lib)))
    ),
    "replay of a plate onto a sample site": lambda lib: _run(
        lib, lib.h.replay(lambda: _normal(lib), trace=_run(lib, lambda: _plate_site(lib)))
    ),
    # plait-nn
    "network without input_shape": lambda lib: lib.h.seed(
        lambda: lib.module("net", stax.Dense(2))(jnp.ones((3, 2))), 0
    )(),
    "network initialised without a key": lambda lib: lib.module(
        "net", stax.Dense(2), (-1, 2)
    )(jnp.ones((3, 2))),
}


def _plate_stack_at(lib: Lib, dim: int) -> None:
    with lib.p.plate_stack("p", [2], rightmost_dim=dim):
        pass


def _plated_sample(lib: Lib, fn: Any) -> None:
    with lib.p.plate("data", 100):
        lib.p.sample("x", fn)


def _subsampled(lib: Lib, body: Callable[[], Any]) -> None:
    with lib.p.plate("data", 6, subsample_size=2):
        body()


def _raised(case: Callable[[Lib], Any], lib: Lib) -> BaseException | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            case(lib)
        except Exception as error:
            return error
    return None


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_plait_raises_an_instance_of_the_class_numpyro_raises(case: str) -> None:
    theirs = _raised(CASES[case], NUMPYRO)
    ours = _raised(CASES[case], PLAIT)
    assert theirs is not None, "NumPyro accepts this input"
    assert ours is not None, f"plait accepts this input; NumPyro raises {theirs!r}"
    assert isinstance(ours, type(theirs)), (type(ours).__mro__, type(theirs))
    assert isinstance(ours, plait.PlaitError), type(ours).__mro__


def test_infer_config_without_config_fn_is_accepted_as_in_numpyro() -> None:
    def model(lib: Lib) -> Any:
        return _run(lib, lib.h.infer_config(lambda: _normal(lib)))

    theirs, ours = model(NUMPYRO), model(PLAIT)
    assert theirs["x"]["infer"] == ours["x"].infer == {}
    assert jnp.array_equal(theirs["x"]["value"], ours["x"].value)


def test_errors_stay_value_errors_and_keep_their_site() -> None:
    error = _raised(CASES["two sample sites of one name"], PLAIT)
    assert isinstance(error, plait.SiteAssertionError)
    assert isinstance(error, ValueError) and isinstance(error, AssertionError)
    assert error.site == "x"
    error = _raised(CASES["fn is not a distribution"], PLAIT)
    assert isinstance(error, plait.SiteTypeError) and isinstance(error, ValueError)
    assert error.site == "z"


def test_flax_module_of_a_wrong_type_is_a_type_error() -> None:
    # NumPyro fails inside flax with an AttributeError ('function' object has no attribute
    # '_mapping'); plait checks the argument first and raises a TypeError naming the network.
    pytest.importorskip("flax")
    from numpyro.contrib.module import nnx_module

    with pytest.raises(AttributeError):
        numpyro.handlers.seed(lambda: nnx_module("net", lambda x: x), 0)()
    expected = re.escape("network 'net' got a builtins.function")
    with pytest.raises(plait.SiteTypeError, match=expected):
        plait.handlers.seed(lambda: plait.nn.flax_nnx_module("net", lambda x: x), 0)()


def test_subsample_size_larger_than_size_is_an_error() -> None:
    # NumPyro warns ("subsample_size does not match len(subsample)") and subsamples
    # nothing; plait refuses the plate, with a ValueError.
    with pytest.warns(UserWarning, match="subsample_size does not match"):
        _run(NUMPYRO, lambda: numpyro.plate("p", 3, subsample_size=5))
    with pytest.raises(plait.SiteError, match="subsample_size=5, which must be between 1"):
        _run(PLAIT, lambda: plait.plate("p", 3, subsample_size=5))
