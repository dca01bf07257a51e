"""``get_model_relations``: against hand-written graphs, and against NumPyro's own
``get_model_relations`` on the models NumPyro can inspect (no ``scan``)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer.inspect import get_model_relations as numpyro_relations

import plait
from plait import param, sample
from plait.control_flow import cond, scan, while_loop
from plait.enum import config_enumerate
from plait.viz import get_model_relations

NUMPYRO_KEYS = (
    "sample_sample",
    "sample_param",
    "sample_dist",
    "param_constraint",
    "plate_sample",
    "observed",
)


def gaussian_hmm(y: Any = None, T: int = 10) -> Any:
    """The seed's ``scan`` docstring model."""

    def transition(x_prev: Any, y_curr: Any) -> Any:
        x_curr = sample("x", dist.Normal(x_prev, 1))
        y_curr = sample("y", dist.Normal(x_curr, 1), obs=y_curr)
        return x_curr, (x_curr, y_curr)

    x0 = sample("x_0", dist.Normal(0, 1))
    _, (x, y) = scan(transition, x0, y, length=T)
    return (x, y)


def test_gaussian_hmm() -> None:
    assert get_model_relations(gaussian_hmm, (np.arange(10.0),)) == {
        "sample_sample": {"x_0": [], "x": ["x_0"], "y": ["x"]},
        "sample_param": {"x_0": [], "x": [], "y": []},
        "sample_dist": {"x_0": "Normal", "x": "Normal", "y": "Normal"},
        "param_constraint": {},
        "plate_sample": {"transition": ["x", "y"]},
        "observed": ["y"],
        "carried": {"x": ["x"], "y": []},
        "time_plates": {"transition": 10},
        "enumerated": [],
        "collapsed": [],
    }


TRANS = jnp.array([[0.9, 0.1], [0.2, 0.8]])


@config_enumerate
def enumerated_hmm(ys: Any) -> Any:
    def step(x: Any, y: Any) -> Any:
        x = sample("x", dist.Categorical(TRANS[x]))
        sample("y", dist.Normal(2.0 * x, 1.0), obs=y)
        return x, x

    return scan(step, 0, ys)[1]


def test_enumerated_hmm() -> None:
    relations = get_model_relations(enumerated_hmm, (jnp.arange(6.0),))
    assert relations["sample_sample"] == {"x": [], "y": ["x"]}
    assert relations["carried"] == {"x": ["x"], "y": []}
    assert relations["plate_sample"] == {"step": ["x", "y"]}
    assert relations["time_plates"] == {"step": 6}
    assert relations["enumerated"] == ["x"]
    assert relations["observed"] == ["y"]
    assert relations["sample_dist"] == {"x": "CategoricalProbs", "y": "Normal"}


def test_dependence_on_the_previous_step_only_is_carried_not_same_step() -> None:
    def model() -> Any:
        def step(c: Any, _: Any) -> Any:
            x_prev, _ = c
            x = sample("x", dist.Normal(0.0, 1.0))
            z = sample("z", dist.Normal(x_prev, 1.0))  # the previous x, not this one
            return (x, z), None

        return scan(step, (0.0, 0.0), None, length=4)

    relations = get_model_relations(model)
    assert relations["sample_sample"] == {"x": [], "z": []}
    assert relations["carried"] == {"x": [], "z": ["x"]}


def test_a_history_carried_two_steps_back() -> None:
    def model() -> Any:
        def step(c: Any, _: Any) -> Any:
            older, old = c
            x = sample("x", dist.Normal(older, 1.0))  # two steps back, through `old`
            return (old, x), None

        return scan(step, (0.0, 0.0), None, length=5)

    assert get_model_relations(model)["carried"] == {"x": ["x"]}


def mixture(backend: Any, data: Any) -> None:
    """A plated mixture, written once for plait and NumPyro."""
    weights = backend.sample("weights", dist.Dirichlet(jnp.ones(3)))
    scale = backend.param("scale", 1.0, constraint=dist.constraints.positive)
    with backend.plate("components", 3):
        locs = backend.sample("locs", dist.Normal(0.0, 10.0))
    with backend.plate("data", len(data)):
        z = backend.sample("z", dist.Categorical(weights))
        backend.deterministic("loc", locs[z])
        backend.sample("obs", dist.Normal(locs[z], scale), obs=data)


def test_plated_mixture_equals_numpyro() -> None:
    data = jnp.array([0.1, 4.0, -3.0, 2.2])
    ours = get_model_relations(lambda d: mixture(plait, d), (data,))
    theirs = numpyro_relations(lambda d: mixture(numpyro, d), (data,))
    for key in NUMPYRO_KEYS:
        assert ours[key] == theirs[key], key
    assert ours["sample_sample"] == {
        "weights": [],
        "locs": [],
        "z": ["weights"],
        "loc": ["locs", "z"],
        "obs": ["locs", "z"],
    }
    assert ours["sample_param"]["obs"] == ["scale"]
    assert ours["plate_sample"] == {"components": ["locs"], "data": ["z", "loc", "obs"]}


def nested(backend: Any) -> None:
    a = backend.sample("a", dist.Normal())
    with backend.plate("outer", 3):
        b = backend.sample("b", dist.Normal(a, 1.0))
        with backend.plate("inner", 2, dim=-2):
            c = backend.sample("c", dist.Normal(b, 1.0))
        backend.deterministic("d", c.sum(0) + 1.0)


def test_nested_plates_and_deterministic_equal_numpyro() -> None:
    ours = get_model_relations(lambda: nested(plait))
    theirs = numpyro_relations(lambda: nested(numpyro))
    for key in NUMPYRO_KEYS:
        assert ours[key] == theirs[key], key


def test_cond_sites_depend_on_the_predicate_and_every_branch() -> None:
    def model() -> Any:
        flip = sample("flip", dist.Normal())
        loc = sample("loc", dist.Normal())
        scale = sample("scale", dist.LogNormal())
        return cond(
            flip > 0,
            lambda _: sample("y", dist.Normal(loc, 1.0), obs=0.5),
            lambda _: sample("y", dist.Laplace(0.0, scale), obs=0.5),
            None,
        )

    relations = get_model_relations(model)
    assert relations["sample_sample"]["y"] == ["flip", "loc", "scale"]
    assert relations["sample_dist"]["y"] == "Normal | Laplace"


def test_while_loop_sites_sit_in_a_loop_box() -> None:
    data = jnp.array([0.5, 1.5, 2.5, 9.0])

    def model() -> Any:
        mu = sample("mu", dist.Normal(0.0, 5.0))

        def body(i: Any) -> Any:
            sample("y", dist.Normal(mu, 1.0), obs=data[i])
            return i + 1

        return while_loop(lambda i: data[i] <= 2.0, body, 0)

    relations = get_model_relations(model)
    assert relations["sample_sample"] == {"mu": [], "y": ["mu"]}
    assert relations["plate_sample"] == {"body": ["y"]}
    assert relations["time_plates"] == {"body": None}
    assert relations["sample_dist"]["y"] == "Normal"
    assert relations["observed"] == ["y"]


def test_collapsed_sites_are_marked() -> None:
    def model() -> None:
        x = sample("x", dist.Normal(), infer={"collapse": True})  # type: ignore[typeddict-unknown-key]
        sample("y", dist.Normal(x, 1.0), obs=0.0)

    assert get_model_relations(model)["collapsed"] == ["x"]


def test_params_and_their_constraints() -> None:
    def model() -> None:
        w = param("w", jnp.ones(2), constraint=dist.constraints.positive)
        sample("y", dist.Normal(w.sum(), 1.0), obs=0.0)

    relations = get_model_relations(model)
    assert relations["sample_param"] == {"y": ["w"]}
    assert relations["param_constraint"] == {"w": str(dist.constraints.positive)}
