"""The loop of a ``scan``: trace the body's step, then run it over time.

The step is traced into a jaxpr on every call. When the new carry does not depend on the
old one (every site that feeds the carry has a value: a log density evaluation), nothing needs a
sequence: the step is evaluated for all times at once with ``vmap`` (the carries going in
are the carries coming out, shifted by one). Otherwise it runs under ``lax.scan``, with a
per-step key split from the loop's key in the carry, as NumPyro does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax, random
from jax.extend.core import ClosedJaxpr, Literal, jaxpr_as_fun

from plait import Messenger, PlateFrame
from plait.control_flow._body import check_carry, run_step
from plait.control_flow._cache import run_cached
from plait.control_flow._errors import ControlFlowTypeError
from plait.control_flow._sites import SitePayload, SiteSkeleton, split_trace
from plait.control_flow._step import ScanContext

__all__ = ["LoopResult", "LoopSpec", "run_loop"]


class LoopSpec(NamedTuple):
    """What a loop is, apart from its arrays.

    Fields:
        name: the body's name, for errors.
        length: the number of steps.
        reverse: run from the last element of ``xs`` to the first.
        handled_by: the handlers the loop's message reached, outermost first.
        frames: the plates enclosing the loop.
        parent: the loop this one is nested in (``None`` at top level).
        record: trace the body's sites (``False`` with no handler active: a plain scan).
    """

    name: str
    length: int
    reverse: bool
    handled_by: tuple[Messenger[Any, Any], ...]
    frames: tuple[PlateFrame, ...]
    parent: ScanContext | None
    record: bool


class LoopResult(NamedTuple):
    """The final carry, the stacked outputs, and the body's sites stacked over time."""

    carry: Any
    ys: Any
    payloads: dict[str, SitePayload]


def _strong(tree: Any) -> Any:
    """Arrays of fixed (not weak) dtype, so the carry's type cannot drift."""

    def fix(leaf: Any) -> Any:
        leaf = jnp.asarray(leaf)
        return lax.convert_element_type(leaf, leaf.dtype)

    return jax.tree_util.tree_map(fix, tree)


def _aval(shape: tuple[int, ...], like: Any) -> Any:
    return jax.ShapeDtypeStruct(shape, like.dtype)  # type: ignore[no-untyped-call]


def _step_function(
    f: Callable[[Any, Any], tuple[Any, Any]],
    spec: LoopSpec,
    skeletons: dict[str, SiteSkeleton],
    vectorised: bool,
) -> Callable[[Any, Any, Any, Any], tuple[Any, Any, dict[str, SitePayload]]]:
    def step(carry: Any, x: Any, index: Any, key: Any) -> tuple[Any, Any, Any]:
        payloads: dict[str, SitePayload] = {}
        if spec.record:
            context = ScanContext(
                spec.name, spec.length, index, spec.handled_by, spec.frames, spec.parent, vectorised
            )
            result = run_step(f, carry, x, context=context, rng_key=key)
            new_carry, y = result.carry, result.output
            found, payloads = split_trace(result.trace)
            skeletons.clear()
            skeletons.update(found)
        else:
            out = f(carry, x)
            if not (isinstance(out, tuple | list) and len(out) == 2):
                raise ControlFlowTypeError(
                    f"scan '{spec.name}': the body must return a pair (new_carry, y), got "
                    f"{type(out).__name__}. Return `carry, y` (y may be None)."
                )
            new_carry, y = out
        check_carry(spec.name, carry, new_carry)
        new_carry = jax.tree_util.tree_map(
            lambda a, b: lax.convert_element_type(b, jnp.result_type(a)), carry, new_carry
        )
        return new_carry, y, payloads

    return step


def _carry_is_fed_back(closed: ClosedJaxpr, n_carry: int) -> bool:
    """Whether any output carry depends on the input carry (conservative: an equation
    with a dependent input makes all its outputs dependent)."""
    jaxpr = closed.jaxpr
    dependent = set(jaxpr.invars[:n_carry])
    for eqn in jaxpr.eqns:
        if any(not isinstance(v, Literal) and v in dependent for v in eqn.invars):
            dependent.update(eqn.outvars)
    return any(not isinstance(v, Literal) and v in dependent for v in jaxpr.outvars[:n_carry])


class _Program(NamedTuple):
    """What runs the loop over a traced step, apart from the step's jaxpr and arrays."""

    n_carry: int
    length: int
    reverse: bool
    vectorised: bool


def _execute(
    jaxpr: Any,
    program: _Program,
    consts: list[Any],
    init_leaves: list[Any],
    x_leaves: list[Any],
    rng_key: Any,
) -> list[Any]:
    """Run the loop over the step ``ClosedJaxpr(jaxpr, consts)``: the final carry's leaves,
    then the stacked outputs'."""
    fun = jaxpr_as_fun(ClosedJaxpr(jaxpr, consts))
    n_carry, length = program.n_carry, program.length
    positions = jnp.arange(length, dtype=jnp.int32)
    if program.vectorised:
        keys: list[Any] = []
        if rng_key is not None:

            def split(key: Any, _: None) -> tuple[Any, Any]:
                key, sub = random.split(key)
                return key, sub

            _, subkeys = lax.scan(split, rng_key, None, length=length)
            keys = [subkeys[::-1] if program.reverse else subkeys]

        def carries_out(xl: list[Any], i: Any, kl: list[Any]) -> list[Any]:
            return fun(*init_leaves, *xl, i, *kl)[:n_carry]  # type: ignore[no-any-return]

        outs_c = jax.vmap(carries_out)(x_leaves, positions, keys)
        if program.reverse:
            carry_in = [
                jnp.concatenate([c[1:], i[None]]) for c, i in zip(outs_c, init_leaves, strict=True)
            ]
            final = [c[0] for c in outs_c]
        else:
            carry_in = [
                jnp.concatenate([i[None], c[:-1]]) for c, i in zip(outs_c, init_leaves, strict=True)
            ]
            final = [c[-1] for c in outs_c]

        def everything(cl: list[Any], xl: list[Any], i: Any, kl: list[Any]) -> list[Any]:
            return fun(*cl, *xl, i, *kl)[n_carry:]  # type: ignore[no-any-return]

        rest = jax.vmap(everything)(carry_in, x_leaves, positions, keys)
        return [*final, *rest]

    def body(
        carry: tuple[Any, list[Any]], inputs: tuple[list[Any], Any]
    ) -> tuple[tuple[Any, list[Any]], list[Any]]:
        key, carry_leaves = carry
        xl, i = inputs
        kl: list[Any] = []
        if key is not None:
            key, sub = random.split(key)
            kl = [sub]
        outs = fun(*carry_leaves, *xl, i, *kl)
        return (key, outs[:n_carry]), outs[n_carry:]

    (_, final_c), rest_s = lax.scan(
        body, (rng_key, init_leaves), (x_leaves, positions), length=length, reverse=program.reverse
    )
    return [*final_c, *rest_s]


def run_loop(
    f: Callable[[Any, Any], tuple[Any, Any]],
    init: Any,
    xs: Any,
    rng_key: Any,
    spec: LoopSpec,
    skeletons: dict[str, SiteSkeleton],
) -> LoopResult:
    """Run the loop; ``skeletons`` receives the static part of the body's sites.

    The step is traced on every call; outside ``jit`` the compiled loop comes from the
    compile cache, keyed on the traced step (see ``_cache.py``).

    Example:
        >>> import jax.numpy as jnp
        >>> spec = LoopSpec("add", 3, False, (), (), None, record=False)
        >>> result = run_loop(lambda c, x: (c + x, c), 0.0, jnp.arange(3.0), None, spec, {})
        >>> float(result.carry), result.ys.tolist()
        (3.0, [0.0, 0.0, 1.0])
    """
    length = spec.length
    init = _strong(init)
    x_avals = jax.tree_util.tree_map(lambda leaf: _aval(jnp.shape(leaf)[1:], leaf), xs)
    index_aval = _aval((), jnp.zeros((), jnp.int32))
    key_aval = None if rng_key is None else _aval(rng_key.shape, rng_key)
    init_leaves = jax.tree_util.tree_leaves(init)
    x_leaves = jax.tree_util.tree_leaves(xs)
    n_carry = len(init_leaves)
    avals = (init, x_avals, index_aval, key_aval)
    step = _step_function(f, spec, skeletons, vectorised=False)
    closed, out_shape = jax.make_jaxpr(step, return_shape=True)(*avals)
    vectorise = length > 0 and not closed.effects and not _carry_is_fed_back(closed, n_carry)
    if vectorise:  # trace again, letting the body take whole series instead of slices
        step = _step_function(f, spec, skeletons, vectorised=True)
        closed = jax.make_jaxpr(step)(*avals)
    program = _Program(n_carry, length, spec.reverse, vectorise)
    jaxpr = closed.jaxpr

    def execute(
        consts: list[Any], init_leaves: list[Any], x_leaves: list[Any], rng_key: Any
    ) -> list[Any]:
        return _execute(jaxpr, program, consts, init_leaves, x_leaves, rng_key)

    leaves = run_cached(closed, program, execute, (init_leaves, x_leaves, rng_key))
    carry, ys, payloads = jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(out_shape), leaves
    )
    return LoopResult(carry, ys, payloads)
