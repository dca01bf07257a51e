"""The compiled programs MCMC runs for one kernel, model signature and layout.

* ``init(keys, init_params, dynamic)``: the kernel's ``init`` over the chains.
* ``chunk(state, count, dynamic)``: ``count`` (at most ``length``) kernel steps in a
  loop with a dynamic trip count, the collected fields of every ``thinning``-th step
  written into buffers of ``length // thinning`` rows. One compiled chunk serves warm-up
  and sampling and any count, so a progress bar costs no recompilation.
* ``postprocess(z, dynamic)``: the kernel's ``postprocess_fn`` over chains and draws.

``dynamic`` holds the model's array arguments when they are traced; when the model needs
concrete values from them, the arguments are constants of the programs instead and
``dynamic`` is empty.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array, lax
from jax.sharding import Mesh

from plait.infer._args import StaticArgs, merge_args
from plait.infer._chains import over_chains, vmap_chains
from plait.infer._kernel import MCMCKernel

__all__ = ["FieldPlan", "Programs", "build_programs", "get_field", "plan_fields"]


def get_field(obj: Any, path: str) -> Any:
    """The attribute (or dict key, or tuple index) at a dotted ``path`` of ``obj``
    (NumPyro's ``nested_attrgetter``: ``"adapt_state.step_size"``, ``"z.x"``).

    Example:
        >>> from typing import NamedTuple
        >>> class S(NamedTuple):
        ...     z: dict
        >>> get_field(S({"x": 1.0}), "z.x")
        1.0
    """
    for part in path.split("."):
        if isinstance(obj, tuple | list) and part.isdecimal():
            obj = obj[int(part)]
        elif isinstance(obj, dict):
            obj = obj[part]
        else:
            obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class FieldPlan:
    """Which state fields a run collects: ``fields`` (the sample field first) and the
    sample sites to drop from the results (``"~z.a"``)."""

    fields: tuple[str, ...]
    removed: tuple[str, ...]


def plan_fields(
    sample_field: str, default_fields: Sequence[str], extra_fields: Sequence[str]
) -> FieldPlan:
    """NumPyro's collection rule: the sample field, the kernel's default fields, then
    ``extra_fields``; ``"~<sample_field>.<site>"`` drops a site from ``get_samples``.

    Example:
        >>> plan_fields("z", ("z", "diverging"), ("~z.a", "adapt_state.step_size"))
        FieldPlan(fields=('z', 'diverging', 'adapt_state.step_size'), removed=('a',))

    Raises:
        TypeError: ``extra_fields`` is not a tuple or list of strings.
    """
    if not isinstance(extra_fields, tuple | list) or not all(
        isinstance(f, str) for f in extra_fields
    ):
        raise TypeError(
            f"extra_fields must be a tuple or list of field names, got {extra_fields!r}."
        )
    fields: dict[str, None] = {}
    removed: dict[str, None] = {}
    prefix = f"~{sample_field}."
    for name in (sample_field, *default_fields, *extra_fields):
        if name.startswith(prefix):
            removed[name[len(prefix) :]] = None
        else:
            fields[name] = None
    return FieldPlan(tuple(fields), tuple(removed))


@dataclass
class Programs:
    """The jitted programs of one compiled configuration (see the module docstring)."""

    init: Callable[..., Any]
    chunk: Callable[..., Any]
    postprocess: Callable[..., Any]
    length: int
    rows: int
    compiled_ahead: bool = False


def build_programs(
    kernel: MCMCKernel[Any],
    *,
    num_warmup: int,
    plan: FieldPlan,
    thinning: int,
    length: int,
    mesh: Mesh | None,
    static: StaticArgs | None,
    constant_args: tuple[tuple[Any, ...], dict[str, Any]] | None,
    postprocess_fn: Callable[..., Any] | None,
) -> Programs:
    """Jit the kernel's functions for this configuration.

    Args:
        kernel: the kernel (already prepared for these arguments).
        num_warmup: the warm-up steps the kernel's ``init`` is told about.
        plan: the fields to collect.
        thinning: keep every ``thinning``-th step of a chunk (``length`` is a multiple).
        length: the most steps one chunk runs.
        mesh: split the chains over these devices (``shard_map``), or ``None``.
        static: with traced arguments, the static part of ``(args, kwargs)``.
        constant_args: instead, the arguments themselves, held as constants.
        postprocess_fn: MCMC's own ``postprocess_fn`` (NumPyro's argument), or ``None``
            for the kernel's.
    """
    ensemble = kernel.is_ensemble_kernel
    rows = length // thinning

    def resolve(dynamic: tuple[Any, ...]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if constant_args is not None:
            return constant_args
        assert static is not None
        return merge_args(dynamic, static)

    def init_one(key: Array, init_params: Any, dynamic: tuple[Any, ...]) -> Any:
        args, kwargs = resolve(dynamic)
        return kernel.init(key, num_warmup, init_params, args, kwargs)

    def chunk_one(state: Any, count: Array, dynamic: tuple[Any, ...]) -> Any:
        args, kwargs = resolve(dynamic)

        def collect(s: Any) -> Any:
            return tuple(get_field(s, f) for f in plan.fields)

        def body(i: Array, carry: Any) -> Any:
            s, buffers = carry
            s = kernel.sample(s, args, kwargs)
            # Every step of a block of `thinning` writes the block's row: the last wins,
            # which is the draw NumPyro keeps.
            row = i // thinning
            buffers = jax.tree_util.tree_map(
                lambda b, v: lax.dynamic_update_index_in_dim(b, jnp.asarray(v, b.dtype), row, 0),
                buffers,
                collect(s),
            )
            return s, buffers

        blank = jax.eval_shape(collect, state)
        buffers = jax.tree_util.tree_map(lambda a: jnp.zeros((rows, *a.shape), a.dtype), blank)
        return lax.fori_loop(0, count, body, (state, buffers))

    def post_one(z: Any, dynamic: tuple[Any, ...]) -> Any:
        args, kwargs = resolve(dynamic)
        fn = postprocess_fn if postprocess_fn is not None else kernel.postprocess_fn(args, kwargs)
        return fn(z)

    post_draws = jax.jit(jax.vmap(jax.vmap(post_one, (0, None)), (0, None)))
    post_single = jax.jit(post_one)

    def post_all(z: Any, dynamic: tuple[Any, ...], batch_shape: tuple[int, int]) -> Any:
        """Post-process draws shaped ``batch_shape + ...``; a model with no continuous
        latent has an empty ``z``: its (deterministic) values are broadcast."""
        if jax.tree_util.tree_leaves(z):
            return post_draws(z, dynamic)
        out = post_single(z, dynamic)
        return jax.tree_util.tree_map(
            lambda v: jnp.broadcast_to(v, (*batch_shape, *jnp.shape(v))), out
        )

    if ensemble:
        init_all: Callable[..., Any] = init_one
        chunk_all: Callable[..., Any] = chunk_one
    else:
        init_all = vmap_chains(init_one, (0, 0, None))
        chunk_all = over_chains(chunk_one, (0, None, None), mesh)
    return Programs(jax.jit(init_all), jax.jit(chunk_all), post_all, length, rows)
