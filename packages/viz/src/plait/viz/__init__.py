"""plait-viz: a model's graph as data (:func:`get_model_relations`) and drawn with graphviz
(:func:`render_model`): plates as boxes, a ``scan`` body as a plate over time with its
carried dependencies (``x_{t-1} -> x_t``), enumerated and collapsed sites marked.

Example:
    >>> import numpyro.distributions as dist
    >>> from plait import sample
    >>> from plait.viz import get_model_relations
    >>> def model():
    ...     z = sample("z", dist.Normal())
    ...     sample("y", dist.Normal(z, 1.0), obs=0.5)
    >>> get_model_relations(model)["sample_sample"]
    {'z': [], 'y': ['z']}
"""

from plait.viz.__about__ import __version__ as __version__
from plait.viz._relations import get_model_relations as get_model_relations
from plait.viz._render import generate_graph_specification as generate_graph_specification
from plait.viz._render import render_graph as render_graph
from plait.viz._render import render_model as render_model

__all__ = [
    "__version__",
    "generate_graph_specification",
    "get_model_relations",
    "render_graph",
    "render_model",
]
