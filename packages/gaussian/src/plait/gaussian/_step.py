"""One step of a ``scan`` body traced into a jaxpr whose inputs include its latent values.

The body runs once through :meth:`ScanCall.run_step` (so every handler acting inside the
loop acts) with two handlers of ours around it:

- ``_inject``, innermost (it sees a site first): a latent Gaussian site without a value
  gets a *placeholder* value, which is an input of the traced step; so does a site
  marked for enumeration (plait-enum sums it out later). A placeholder is a value, so
  initialisation strategies and other handlers outside leave the site alone; a handler
  that gives the site a value of its own (``substitute``, ``condition``) replaces it.
- ``_record``, outermost: every ``sample`` and ``deterministic`` site as the handlers
  left it; a site whose value is still the placeholder is a *candidate* for collapse.
  It adds the arrays the analysis needs (a Gaussian site's mean, noise root and mask;
  any other site's distribution leaves and value) to the step's outputs.

The number of placeholders is only known once the body has run, so a first, abstract
run (``jax.eval_shape``) finds them and a second (``jax.make_jaxpr``) traces the step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import ClosedJaxpr, jaxpr_as_fun

from plait import InferDict, Message, Messenger, PlateFrame, StashKey, plate_batch_shape
from plait.control_flow import ControlFlowTypeError
from plait.control_flow.plugin_api import ScanCall
from plait.gaussian._dists import Kind, gaussian_kind, gaussian_parts, sample_dtype

__all__ = ["INNER_NAME", "Placeholder", "SiteInfo", "TracedStep", "expected_shape", "trace_step"]

INNER_NAME: StashKey[str] = StashKey()
PLACEHOLDER: StashKey[Any] = StashKey()


class Placeholder:
    """One latent site of the step that got a placeholder (in order of appearance)."""

    def __init__(self, name: str, shape: tuple[int, ...], dtype: Any, enumerated: bool) -> None:
        self.name = name
        self.shape = shape
        self.dtype = dtype
        self.enumerated = enumerated

    def aval(self) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct(self.shape, self.dtype)  # type: ignore[no-untyped-call]


@dataclass
class SiteInfo:
    """A ``sample`` or ``deterministic`` site of the step, as the handlers left it.

    ``outputs`` maps the arrays recorded for it (``"loc"``, ``"root"``, ``"mask"``,
    ``"value"``, ``"scale"``, ``"fn"``) to their positions among the step's outputs.
    """

    name: str
    inner: str | None
    type: str
    observed: bool
    placeholder: int | None  # index of its placeholder, if the value is still it
    gaussian: Kind | None
    masked: bool
    frames: tuple[PlateFrame, ...]
    infer: InferDict
    scale: Any  # None, a Python number, or the string "array" (recorded in outputs)
    shape: tuple[int, ...]
    event_ndim: int
    fn: Any
    outputs: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class TracedStep:
    """The traced step: ``fun(*carry, *x, index, *key, *placeholders) -> outputs``.

    Outputs: the new carry's leaves first, then the arrays of ``sites``.
    """

    closed: ClosedJaxpr
    fun: Callable[..., list[Any]]
    sites: list[SiteInfo]
    placeholders: list[Placeholder]
    n_carry: int
    n_x: int
    n_key: int

    @property
    def inputs(self) -> dict[str, range]:
        """Positions of the input groups."""
        c, x, k = self.n_carry, self.n_x, self.n_key
        p = len(self.placeholders)
        return {
            "carry": range(0, c),
            "x": range(c, c + x),
            "index": range(c + x, c + x + 1),
            "key": range(c + x + 1, c + x + 1 + k),
            "placeholders": range(c + x + 1 + k, c + x + 1 + k + p),
        }


def expected_shape(msg: Message, outer: tuple[PlateFrame, ...]) -> tuple[int, ...]:
    """The value shape a sample site has once every plate (the loop's too) has acted."""
    fn = msg.fn
    blocked = msg.infer.get("block_plates") or ()
    frames = {f.dim: f for f in (*msg.cond_indep_stack, *outer) if f.name not in blocked}
    batch = tuple(msg.kwargs.get("sample_shape", ())) + tuple(fn.batch_shape)
    return plate_batch_shape(list(frames.values()), batch) + tuple(fn.event_shape)


class _inject(Messenger[..., Any]):
    def __init__(
        self,
        provide: Callable[[str, tuple[int, ...], Any, bool], Any],
        excluded: frozenset[str],
        outer: tuple[PlateFrame, ...],
    ) -> None:
        self.provide = provide
        self.excluded = excluded
        self.outer = outer
        super().__init__()

    def process_deterministic(self, msg: Message) -> None:
        msg.stash[INNER_NAME] = msg.name or ""

    def process_sample(self, msg: Message) -> None:
        name = msg.name or ""
        msg.stash[INNER_NAME] = name
        if msg.is_observed or msg.value is not None:
            return
        if msg.kwargs.get("sample_shape"):
            return
        if msg.infer.get("enumerate") == "parallel":
            shape = expected_shape(msg, self.outer)
            dtype = jax.eval_shape(lambda: msg.fn.sample(jax.random.key(0))).dtype
            msg.value = self.provide(name, shape, dtype, True)
        elif (
            msg.infer.get("collapse") is not False
            and name not in self.excluded
            and gaussian_kind(msg.fn) is not None
        ):
            shape = expected_shape(msg, self.outer)
            dtype = sample_dtype(msg.fn)
            msg.value = self.provide(name, shape, dtype, False)
        else:
            return
        msg.stash[PLACEHOLDER] = msg.value


class _record(Messenger[..., Any]):
    def __init__(
        self,
        placeholder_index: dict[int, int],
        provide: Callable[[str, tuple[int, ...], Any, bool], Any],
    ) -> None:
        self.placeholder_index = placeholder_index
        self.provide = provide
        self.sites: list[SiteInfo] = []
        self.arrays: list[Any] = []
        super().__init__()

    def _add(self, info: SiteInfo, key: str, leaves: list[Any]) -> None:
        start = len(self.arrays)
        self.arrays.extend(jnp.asarray(leaf) for leaf in leaves)
        info.outputs[key] = list(range(start, len(self.arrays)))

    def process_deterministic(self, msg: Message) -> None:
        info = SiteInfo(
            msg.name or "", msg.stash.get(INNER_NAME), "deterministic", False, None, None, False,
            tuple(msg.cond_indep_stack), InferDict(), None, (), 0, None,
        )  # fmt: skip
        self._add(info, "value", jax.tree_util.tree_leaves(msg.value))
        self.sites.append(info)

    def _opaque(self, msg: Message) -> None:
        """A latent site whose value an outer handler gives (plait-enum's enumerated
        values), or would draw (a key it adds later): an opaque input of the step, like an
        enumerated site, so that what reads it is known to depend on it."""
        if msg.is_observed or PLACEHOLDER in msg.stash:
            return
        if msg.value is None and msg.kwargs.get("rng_key") is None:
            shape, dtype = expected_shape(msg, ()), sample_dtype(msg.fn)
        elif msg.value is not None and msg.infer.get("enumerate") == "parallel":
            shape, dtype = tuple(jnp.shape(msg.value)), jnp.result_type(msg.value)
        else:
            return
        msg.value = self.provide(msg.name or "", shape, dtype, True)
        msg.stash[PLACEHOLDER] = msg.value

    def process_sample(self, msg: Message) -> None:
        self._opaque(msg)
        fn = msg.fn
        held = msg.stash.get(PLACEHOLDER)
        placeholder = None
        if held is not None and msg.value is held:
            placeholder = self.placeholder_index.get(id(held))
        kind = gaussian_kind(fn)
        scale = msg.scale
        static_scale = scale if scale is None or isinstance(scale, int | float) else "array"
        info = SiteInfo(
            name=msg.name or "",
            inner=msg.stash.get(INNER_NAME),
            type="sample",
            observed=msg.is_observed,
            placeholder=placeholder,
            gaussian=None if kind is None else kind[0],
            masked=False if kind is None else kind[1],
            frames=tuple(msg.cond_indep_stack),
            infer=InferDict(**msg.infer),  # type: ignore[typeddict-item]
            scale=static_scale,
            shape=tuple(fn.batch_shape) + tuple(fn.event_shape),
            event_ndim=len(fn.event_shape),
            fn=fn,
        )
        if kind is not None:
            parts = gaussian_parts(fn)
            self._add(info, "loc", [parts.loc])
            self._add(info, "root", [parts.root])
            if parts.mask is not None:
                self._add(info, "mask", [parts.mask])
        else:
            self._add(info, "fn", jax.tree_util.tree_leaves(fn))
        if placeholder is None and msg.value is not None:
            self._add(info, "value", jax.tree_util.tree_leaves(msg.value))
        if static_scale == "array":
            self._add(info, "scale", [scale])
        self.sites.append(info)


def _step_aval(x: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(jnp.shape(x)[1:], jnp.result_type(x))  # type: ignore[no-untyped-call]


def _aval(x: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))  # type: ignore[no-untyped-call]


def trace_step(call: ScanCall, key_aval: Any, excluded: frozenset[str]) -> TracedStep:
    """Trace one step of ``call``'s body with placeholders for its latent Gaussian (and
    enumerated) sites, except those named in ``excluded``."""
    carry_leaves, carry_def = jax.tree_util.tree_flatten(call.init)
    x_avals = jax.tree_util.tree_map(_step_aval, call.xs)
    x_leaves, x_def = jax.tree_util.tree_flatten(x_avals)
    carry_avals = [_aval(a) for a in carry_leaves]
    n_key = 0 if key_aval is None else 1

    def body(
        provide: Callable[[str, tuple[int, ...], Any, bool], Any],
        record: _record,
        carry_in: list[Any],
        x_in: list[Any],
        index: Any,
        key: list[Any],
    ) -> list[Any]:
        carry = jax.tree_util.tree_unflatten(carry_def, carry_in)
        x = jax.tree_util.tree_unflatten(x_def, x_in)
        inject = _inject(provide, excluded, tuple(call.plates))
        result = call.run_step(
            carry, x, index=index, rng_key=key[0] if key else None, outer=[record], inner=[inject]
        )
        out_leaves, out_def = jax.tree_util.tree_flatten(result.carry)
        if out_def != carry_def:  # type: ignore[operator]
            raise ControlFlowTypeError(
                f"scan '{call.name}': the body returns a carry with structure {out_def}, but "
                f"the carry going in has structure {carry_def}. Return a carry of the same "
                "structure as init."
            )
        out_leaves = [
            jnp.asarray(b, jnp.result_type(a)) for a, b in zip(carry_in, out_leaves, strict=True)
        ]
        return [*out_leaves, *record.arrays]

    # 1. Find the placeholders (an abstract run).
    found: list[Placeholder] = []

    def discover(*args: Any) -> list[Any]:
        def provide(name: str, shape: tuple[int, ...], dtype: Any, enumerated: bool) -> Any:
            found.append(Placeholder(name, shape, dtype, enumerated))
            return jnp.zeros(shape, dtype)

        c, x, i, k = args
        return body(provide, _record({}, provide), c, x, i, k)

    index_aval = jax.ShapeDtypeStruct((), jnp.int32)  # type: ignore[no-untyped-call]
    key_avals = [] if key_aval is None else [key_aval]
    jax.eval_shape(discover, carry_avals, x_leaves, index_aval, key_avals)

    # 2. Trace the step with the placeholders as inputs.
    recorded: dict[str, _record] = {}

    def step(*flat: Any) -> list[Any]:
        c = list(flat[: len(carry_avals)])
        rest = flat[len(carry_avals) :]
        x = list(rest[: len(x_leaves)])
        index = rest[len(x_leaves)]
        k = list(rest[len(x_leaves) + 1 : len(x_leaves) + 1 + n_key])
        values = list(rest[len(x_leaves) + 1 + n_key :])
        position = iter(range(len(values)))
        index_of = {id(v): i for i, v in enumerate(values)}

        def provide(name: str, shape: tuple[int, ...], dtype: Any, enumerated: bool) -> Any:
            i = next(position, None)
            if i is None or found[i].name != name or tuple(found[i].shape) != tuple(shape):
                raise ControlFlowTypeError(
                    f"scan '{call.name}': the body's latent sites changed between two traces "
                    f"of one step (site '{name}'); plait.gaussian.collapse needs a body whose "
                    "sites do not depend on Python state."
                )
            return values[i]

        record = _record(index_of, provide)
        recorded["record"] = record
        return body(provide, record, c, x, index, k)

    flat_avals = [*carry_avals, *x_leaves, index_aval, *key_avals, *(p.aval() for p in found)]
    closed = jax.make_jaxpr(step)(*flat_avals)
    record = recorded["record"]
    return TracedStep(
        closed=closed,
        fun=jaxpr_as_fun(closed),
        sites=record.sites,
        placeholders=found,
        n_carry=len(carry_avals),
        n_x=len(x_leaves),
        n_key=n_key,
    )
