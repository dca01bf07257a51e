"""``render_model``: the graph it builds, and one real picture when ``dot`` is installed."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from plait import deterministic, plate, sample
from plait.control_flow import scan
from plait.enum import config_enumerate
from plait.viz import generate_graph_specification, get_model_relations, render_model

graphviz = pytest.importorskip("graphviz", reason="the graphviz Python package is not installed")


def gaussian_hmm(y: Any = None, T: int = 10) -> Any:
    def transition(x_prev: Any, y_curr: Any) -> Any:
        x_curr = sample("x", dist.Normal(x_prev, 1))
        y_curr = sample("y", dist.Normal(x_curr, 1), obs=y_curr)
        return x_curr, (x_curr, y_curr)

    x0 = sample("x_0", dist.Normal(0, 1))
    return scan(transition, x0, y, length=T)


def test_specification_of_the_hmm() -> None:
    spec = generate_graph_specification(get_model_relations(gaussian_hmm, (np.arange(10.0),)))
    assert spec["plate_groups"] == {"transition": ["x", "y"], None: ["x_0"]}
    assert spec["plate_data"] == {"transition": {"parent": None, "length": 10}}
    assert spec["edge_list"] == [("x_0", "x"), ("x", "y")]
    assert spec["carried_edges"] == [("x", "x")]
    assert spec["node_data"]["y"]["is_observed"]


def test_the_graph_draws_the_time_plate_and_the_carried_edge() -> None:
    source = render_model(gaussian_hmm, (np.arange(10.0),), render_distributions=True).source
    assert "subgraph cluster_transition" in source
    assert 'label="transition  (t = 1..10)"' in source
    assert 'x -> x [label="t-1"' in source
    assert "y [label=y fillcolor=grey" in source
    assert r"x_0 ~ Normal\l" in source


def test_marks_for_enumerated_deterministic_and_nested_plates() -> None:
    @config_enumerate
    def model(data: Any) -> None:
        w = sample("w", dist.Dirichlet(jnp.ones(2)))
        with plate("data", len(data)):
            z = sample("z", dist.Categorical(w))
            loc = deterministic("loc", 2.0 * z)
            sample("obs", dist.Normal(loc, 1.0), obs=data)

    source = render_model(model, (jnp.zeros(3),)).source
    assert "z [label=z fillcolor=white peripheries=2" in source
    assert 'loc [label=loc fillcolor=white shape=ellipse style="filled,dashed"]' in source
    assert "subgraph cluster_data" in source


def test_a_missing_graphviz_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "graphviz", None)
    with pytest.raises(ImportError, match=r"pip install plait-viz\[graphviz\]"):
        render_model(gaussian_hmm, (np.arange(10.0),))


@pytest.mark.skipif(
    shutil.which("dot") is None,
    reason="the graphviz `dot` program is not installed (apt-get install graphviz)",
)
@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_renders_the_hmm_to_a_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"hmm{suffix}"
    render_model(gaussian_hmm, (np.arange(10.0),), filename=path)
    data = path.read_bytes()
    if suffix == ".svg":
        text = data.decode()
        assert text.lstrip().startswith("<?xml") and "<svg" in text
        assert "transition" in text and "t&#45;1" in text
    else:
        assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_params_are_drawn_as_numpyro_draws_them() -> None:
    import numpyro
    from numpyro.contrib.render import generate_graph_specification as numpyro_specification
    from numpyro.contrib.render import get_model_relations as numpyro_relations

    import plait

    def model(lib: Any, data: Any) -> None:
        loc = lib.param("loc", 0.0)
        scale = lib.param("scale", 1.0, constraint=dist.constraints.positive)
        with lib.plate("data", len(data)):
            lib.sample("obs", dist.Normal(loc, scale), obs=data)

    data = (jnp.zeros(3),)
    ours = generate_graph_specification(
        get_model_relations(lambda d: model(plait, d), data), render_params=True
    )
    theirs = numpyro_specification(
        numpyro_relations(lambda d: model(numpyro, d), data), render_params=True
    )
    assert {k: set(v) for k, v in ours["plate_groups"].items()} == {
        k: set(v) for k, v in theirs["plate_groups"].items()
    }
    assert ours["edge_list"] == theirs["edge_list"]
    for name, node in theirs["node_data"].items():
        assert {k: ours["node_data"][name][k] for k in node} == node  # plait adds its marks
    source = render_model(lambda d: model(plait, d), data, render_params=True).source
    assert "scale [label=scale fillcolor=white shape=plain" in source
    assert "scale -> obs" in source
    assert "scale" not in render_model(lambda d: model(plait, d), data).source
