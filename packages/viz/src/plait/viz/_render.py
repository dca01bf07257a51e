"""Drawing a model's relations with graphviz: NumPyro's ``generate_graph_specification``,
``render_graph`` and ``render_model``, plus time plates, carried edges and marks.

Conventions (NumPyro's): a latent site is a white ellipse, an observed one grey, a
deterministic one dashed, a param plain text; a plate is a box labelled with its name.
plait adds: a loop over time is a box labelled with its length (``t = 1..T``); a
dependency on an earlier step (through a scan's carry) is a dashed edge labelled
``t-1``; an enumerated site has a double outline, a collapsed one a double dotted outline.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from plait.viz._relations import get_model_relations

__all__ = ["generate_graph_specification", "render_graph", "render_model"]

_GRAPHVIZ_MISSING = (
    "render_model draws with graphviz (https://graphviz.org/): install the Python package "
    "with `pip install plait-viz[graphviz]` (or `pip install graphviz`), and the `dot` "
    "program from your system's packages (e.g. `apt-get install graphviz`)."
)


def generate_graph_specification(
    model_relations: Mapping[str, Any], render_params: bool = False
) -> dict[str, Any]:
    """Model relations (:func:`get_model_relations`) as a graph: nodes grouped by plate,
    plate nesting, node data and edges (NumPyro's format; plait adds ``"carried_edges"``
    and, per plate, ``"length"`` for loops over time).

    Args:
        model_relations: the relations.
        render_params: add the params as nodes.

    Example:
        >>> relations = {"sample_sample": {"x": [], "y": ["x"]}, "sample_param": {},
        ...              "sample_dist": {"x": "Normal", "y": "Normal"}, "param_constraint": {},
        ...              "plate_sample": {"N": ["y"]}, "observed": ["y"]}
        >>> spec = generate_graph_specification(relations)
        >>> spec["plate_groups"], spec["edge_list"]
        ({'N': ['y'], None: ['x']}, [('x', 'y')])
    """
    plate_groups: dict[str | None, list[str]] = dict(model_relations["plate_sample"])
    plate_rvs = {rv for rvs in plate_groups.values() for rv in rvs}
    plate_groups[None] = [rv for rv in model_relations["sample_sample"] if rv not in plate_rvs]
    params: list[str] = []
    if render_params:
        for params_list in model_relations["sample_param"].values():
            for p in params_list:
                if p not in params:
                    params.append(p)
        plate_groups[None].extend(params)

    enumerated = set(model_relations.get("enumerated", ()))
    collapsed = set(model_relations.get("collapsed", ()))
    node_data: dict[str, dict[str, Any]] = {}
    for rv in model_relations["sample_sample"]:
        node_data[rv] = {
            "is_observed": rv in model_relations["observed"],
            "distribution": model_relations["sample_dist"][rv],
            "enumerated": rv in enumerated,
            "collapsed": rv in collapsed,
        }
    if render_params:
        for p, constraint in model_relations["param_constraint"].items():
            node_data[p] = {"is_observed": False, "constraint": constraint, "distribution": None}

    # Plate nesting from subset relations (NumPyro's rule; trace order breaks ties).
    plate_data: dict[str, dict[str, Any]] = {}
    for plate1, plate2 in itertools.combinations(plate_groups, 2):
        if plate1 is None or plate2 is None:
            continue
        if set(plate_groups[plate1]) < set(plate_groups[plate2]):
            plate_data[plate1] = {"parent": plate2}
        elif set(plate_groups[plate1]) >= set(plate_groups[plate2]):
            plate_data[plate2] = {"parent": plate1}
    lengths = model_relations.get("time_plates", {})
    for plate in plate_groups:
        if plate is None:
            continue
        plate_data.setdefault(plate, {"parent": None})
        if plate in lengths:
            plate_data[plate]["length"] = lengths[plate]

    edge_list = [
        (source, target)
        for target, sources in model_relations["sample_sample"].items()
        for source in sources
    ]
    if render_params:
        edge_list += [
            (source, target)
            for target, sources in model_relations["sample_param"].items()
            for source in sources
        ]
    carried_edges = [
        (source, target)
        for target, sources in model_relations.get("carried", {}).items()
        for source in sources
    ]
    return {
        "plate_groups": plate_groups,
        "plate_data": plate_data,
        "node_data": node_data,
        "edge_list": edge_list,
        "carried_edges": carried_edges,
    }


def _import_graphviz() -> Any:
    try:
        import graphviz
    except ImportError as e:
        raise ImportError(_GRAPHVIZ_MISSING) from e
    return graphviz


def _plate_label(plate: str, data: Mapping[str, Any]) -> str:
    label = plate.split("__CLONE")[0]
    if "length" in data:
        length = data["length"]
        label += f"  (t = 1..{length})" if length is not None else "  (while)"
    return label


def render_graph(graph_specification: Mapping[str, Any], render_distributions: bool = False) -> Any:
    """A ``graphviz.Digraph`` of a graph specification (:func:`generate_graph_specification`).

    Args:
        graph_specification: the specification.
        render_distributions: list each site's distribution (and each param's constraint)
            beside the graph.

    Raises:
        ImportError: the ``graphviz`` Python package is not installed.
    """
    graphviz = _import_graphviz()
    plate_groups = graph_specification["plate_groups"]
    plate_data = {k: dict(v) for k, v in graph_specification["plate_data"].items()}
    node_data = graph_specification["node_data"]

    graph = graphviz.Digraph()
    subgraphs: dict[str | None, Any] = {
        plate: graphviz.Digraph(name=f"cluster_{plate}") for plate in plate_groups if plate
    }
    for plate, subgraph in subgraphs.items():
        data = plate_data.get(plate, {}) if plate is not None else {}
        style = "dashed" if "length" in data else "solid"
        subgraph.attr(
            label=_plate_label(str(plate), data), labeljust="r", labelloc="b", style=style
        )
    subgraphs[None] = graph

    for plate, rvs in plate_groups.items():
        target = subgraphs[plate]
        for rv in rvs:
            data = node_data[rv]
            attrs = {
                "label": rv,
                "shape": "ellipse",
                "style": "filled",
                "fillcolor": "grey" if data["is_observed"] else "white",
            }
            if not data["distribution"]:  # a param
                attrs.update(shape="plain", label=rv.replace("$params", ""))
            if data["distribution"] == "Deterministic":
                attrs["style"] = "filled,dashed"
            if data.get("enumerated"):
                attrs["peripheries"] = "2"
            if data.get("collapsed"):
                attrs.update(peripheries="2", style="filled,dotted")
            target.node(rv, **attrs)

    # Nest the plates, leaves first (NumPyro's loop).
    while plate_data:
        for plate, data in plate_data.items():
            if not any(other["parent"] == plate for other in plate_data.values()):
                subgraphs[data["parent"]].subgraph(subgraphs[plate])
                plate_data.pop(plate)
                break

    for source, target in graph_specification["edge_list"]:
        graph.edge(source, target)
    for source, target in graph_specification.get("carried_edges", ()):
        graph.edge(source, target, style="dashed", label="t-1", constraint="false")

    if render_distributions:
        lines = ""
        for rv, data in node_data.items():
            if data["distribution"]:
                marks = [m for m in ("enumerated", "collapsed") if data.get(m)]
                suffix = f" ({', '.join(marks)})" if marks else ""
                lines += rf"{rv} ~ {data['distribution']}{suffix}\l"
            if data.get("constraint"):
                lines += rf"{rv} ∈ {data['constraint']}\l"
        graph.node("distribution_description_node", label=lines, shape="plaintext")
    return graph


def render_model(
    model: Callable[..., Any],
    model_args: tuple[Any, ...] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    filename: str | Path | None = None,
    render_distributions: bool = False,
    render_params: bool = False,
) -> Any:
    """Draw ``model`` as a graph (NumPyro's ``render_model``, which refuses ``scan``;
    here a ``scan`` body is a plate over time with its carried dependencies drawn as dashed
    ``t-1`` edges).

    Args:
        model: the model.
        model_args: its positional arguments.
        model_kwargs: its keyword arguments.
        filename: save the drawing there, in the format its suffix names (``.svg``,
            ``.png``, ``.pdf``); needs the ``dot`` program.
        render_distributions: list each site's distribution beside the graph.
        render_params: draw the params too.

    Returns:
        The ``graphviz.Digraph``.

    Raises:
        ImportError: the ``graphviz`` Python package is not installed.
    """
    relations = get_model_relations(model, model_args=model_args, model_kwargs=model_kwargs)
    spec = generate_graph_specification(relations, render_params=render_params)
    graph = render_graph(spec, render_distributions=render_distributions)
    if filename is not None:
        path = Path(filename)
        graph.render(path.with_suffix(""), view=False, cleanup=True, format=path.suffix[1:])
    return graph
