"""``shard``: split plates over the devices of a mesh (data parallelism).

The handler only annotates: every value of a site inside a sharded plate gets a sharding
that splits the plate's dimension over a mesh axis. Under ``jax.jit`` (which every plait
inference algorithm compiles with) XLA's SPMD partitioner then runs each device on its
rows and turns each sum over the plate into a collective; the arithmetic is unchanged, so
results equal the unsharded run up to the rounding of those sums.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeAlias, TypeVar, overload

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from plait import ControlFlowStep, Message, Messenger
from plait.errors import HandlerError

__all__ = ["AxisName", "shard"]

P = ParamSpec("P")
R = TypeVar("R")

AxisName: TypeAlias = str | tuple[str, ...]
"""A mesh axis, or several (their devices together split the plate)."""


def _axes(axis: AxisName) -> tuple[str, ...]:
    return (axis,) if isinstance(axis, str) else tuple(axis)


class shard(Messenger[P, R]):
    """Split each plate named in ``plates`` over a mesh axis: each device holds and
    evaluates only its rows of the plate.

    Inside a sharded plate, the value of every ``sample`` site (observed data and latent
    draws), ``deterministic`` site, and ``param`` / ``subsample`` site with an
    ``event_dim`` is constrained (``jax.lax.with_sharding_constraint``) to be split along
    the plate's dimension. Compiled with ``jax.jit`` (as ``log_density`` is under the
    user's ``jit``, and ``MCMC``, ``SVI`` always), XLA then evaluates each device's rows
    where they are and sums over the plate with an all-reduce. Draws are the same as
    unsharded (JAX's partitionable random bits), and values equal the unsharded run up
    to the rounding of the sums. With ``subsample_size``, the indices are drawn once for
    the whole plate, each device contributes the chosen rows it holds, and the minibatch
    is split over the devices again.

    Place the data the same way, ``jax.device_put(y, NamedSharding(mesh,
    PartitionSpec("data")))``, so that no device ever holds all rows (otherwise each
    device is handed all rows and keeps its own). A plate whose size is not a multiple of
    the axis size is padded by XLA. Wrap a guide too when it has sites in the plate.

    Args:
        fn: the model (or guide).
        mesh: the device mesh, with axes of type ``Auto``: ``jax.make_mesh((4,),
            ("data",), axis_types=(AxisType.Auto,))`` or ``Mesh(jax.devices(), "data")``.
        plates: ``{plate name: mesh axis}``, the axis a name or a tuple of names.

    Raises:
        HandlerError: ``mesh`` is not a ``jax.sharding.Mesh`` with ``Auto`` axes,
            ``plates`` is empty or names an axis the mesh does not have; or, when a site
            is reached, the model runs inside a ``shard_map`` (e.g. ``MCMC(...,
            chain_method="parallel")``), whose devices cannot also split the plate.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import plate, sample
        >>> from plait.handlers import shard
        >>> from jax.sharding import AxisType
        >>> mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(AxisType.Auto,))
        >>> def model(y):
        ...     with plate("data", y.shape[0]):
        ...         return sample("y", dist.Normal(0.0, 1.0), obs=y)
        >>> sharded = shard(model, mesh, {"data": "data"})
        >>> jaxpr = jax.make_jaxpr(sharded)(jnp.zeros(8)).jaxpr
        >>> [e.params["sharding"].spec for e in jaxpr.eqns if e.params.get("sharding")]
        [P('data',)]
    """

    @overload
    def __init__(
        self: shard[..., Any],
        fn: None = None,
        mesh: Mesh | None = None,
        plates: Mapping[str, AxisName] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self,
        fn: Callable[P, R],
        mesh: Mesh | None = None,
        plates: Mapping[str, AxisName] | None = None,
    ) -> None: ...
    def __init__(
        self,
        fn: Callable[P, R] | None = None,
        mesh: Mesh | None = None,
        plates: Mapping[str, AxisName] | None = None,
    ) -> None:
        if not isinstance(mesh, Mesh):
            raise HandlerError(
                f"shard() needs a jax.sharding.Mesh, got {type(mesh).__name__}; e.g. "
                'shard(model, jax.sharding.Mesh(jax.devices(), "data"), {"data": "data"}).'
            )
        if not plates:
            raise HandlerError(
                'shard() needs the plates to split, e.g. plates={"data": "data"} '
                "(plate name: mesh axis)."
            )
        for name, axis in plates.items():
            unknown = [a for a in _axes(axis) if a not in mesh.axis_names]
            if unknown:
                raise HandlerError(
                    f"shard(): plate '{name}' is assigned the mesh axis {axis!r}, but the "
                    f"mesh has the axes {tuple(mesh.axis_names)}."
                )
        explicit = [
            a for a, t in zip(mesh.axis_names, mesh.axis_types, strict=True) if t != AxisType.Auto
        ]
        if explicit:
            # With Explicit axes JAX types every array by its sharding and refuses ordinary
            # model code (a gradient of x @ w contracts the split dim); Auto axes let XLA
            # propagate the split through any computation.
            raise HandlerError(
                f"shard() needs a mesh whose axes are of type Auto, but {tuple(explicit)} "
                "are not (jax.make_mesh makes Explicit axes by default). Make it with "
                "jax.make_mesh(shape, names, axis_types=(jax.sharding.AxisType.Auto,) * "
                "len(names)), and place the data with the same mesh."
            )
        self.mesh = mesh
        self.plates = dict(plates)
        super().__init__(fn)

    # -- which dims ------------------------------------------------------------------------
    def spec(self, msg: Message, event_dim: int) -> PartitionSpec | None:
        """The partition of ``msg.value``: each sharded plate's dim split over its axis
        (``None`` when no dim is split). ``event_dim`` dims on the right are the event."""
        shape = jnp.shape(msg.value)
        parts: list[AxisName | None] = [None] * len(shape)
        used: set[str] = set()
        for frame in msg.cond_indep_stack:
            axis = self.plates.get(frame.name)
            if axis is None:
                continue
            position = frame.dim - event_dim
            names = set(_axes(axis))
            # A broadcast dim (size 1) is not split, nor an axis taken by an outer plate.
            if -position > len(shape) or shape[position] == 1 or names & used:
                continue
            used |= names
            parts[position] = axis
        if not used:
            return None
        return PartitionSpec(*parts)  # type: ignore[no-untyped-call,unused-ignore]

    def _constrain(self, msg: Message, event_dim: int | None) -> None:
        if event_dim is None or not msg.cond_indep_stack or not hasattr(msg.value, "shape"):
            return
        spec = self.spec(msg, event_dim)
        if spec is not None:
            msg.value = self._place(msg, spec)

    def _place(self, msg: Message, spec: PartitionSpec) -> Any:
        if jax.sharding.get_abstract_mesh().manual_axes:
            raise HandlerError(
                f"site '{msg.name}' is in a plate that shard() splits over the mesh, but "
                "the model runs inside a shard_map, whose devices cannot split it again "
                "(MCMC(..., chain_method='parallel') splits the chains over the devices). "
                "Run the chains vectorised (chain_method='vectorized') when the devices "
                "split the data."
            )
        sharding = NamedSharding(self.mesh, spec)
        return jax.lax.with_sharding_constraint(msg.value, sharding)  # type: ignore[no-untyped-call,unused-ignore]

    # -- the sites -------------------------------------------------------------------------
    def postprocess_sample(self, msg: Message) -> None:
        self._constrain(msg, len(getattr(msg.fn, "event_shape", ())))

    def postprocess_deterministic(self, msg: Message) -> None:
        self._constrain(msg, 0)

    def postprocess_param(self, msg: Message) -> None:
        self._constrain(msg, msg.kwargs.get("event_dim"))

    def postprocess_subsample(self, msg: Message) -> None:
        self._constrain(msg, msg.kwargs.get("event_dim"))

    def for_control_flow(self, step: ControlFlowStep) -> Messenger[Any, Any]:
        # The enclosing plates come back inside the body: split its sites the same way.
        return shard(mesh=self.mesh, plates=self.plates)
