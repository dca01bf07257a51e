"""Whether a model enumerates anything, and how many plate dims it nests: one cached run.

``plait.infer.log_density`` asks every plugin, so plait-enum must say "not mine" fast for
models without enumerated sites. The answer depends on the model's structure, not on the
values of its arguments, so it is found once per model and argument structure (a run
that gives enumerable sites a placeholder value and records plate dims), and cached.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from plait import Message, Messenger, isolated_stack
from plait.enum._enum import ENUM_DIM, enum, wants_enumeration
from plait.enum._scan_body import config_form, detect_form, enclosing_loop, is_scan
from plait.handlers import substitute

__all__ = ["ModelInfo", "model_info"]


@dataclass(frozen=True)
class ModelInfo:
    """What the probe found: whether any site is enumerated, and the first free dim."""

    has_enum: bool
    first_available_dim: int | None


@dataclass
class _Record:
    has_enum: bool = False
    nesting: int = 0


class _probe(Messenger[..., Any]):
    """Gives latent sites a placeholder value (no key needed) and records the structure."""

    def __init__(self, record: _Record) -> None:
        self.record = record
        super().__init__()

    def process_sample(self, msg: Message) -> None:
        record = self.record
        if ENUM_DIM in msg.stash:
            record.has_enum = True
            return
        if msg.value is not None or msg.is_observed:
            return
        if getattr(msg.fn, "has_enumerate_support", False):
            if wants_enumeration(msg):
                record.has_enum = True
            msg.value = _placeholder(msg)
        elif msg.kwargs.get("rng_key") is None:
            msg.kwargs["rng_key"] = jax.random.key(0)

    def postprocess_sample(self, msg: Message) -> None:
        for f in msg.cond_indep_stack:
            self.record.nesting = max(self.record.nesting, -f.dim)

    def process_control_flow(self, msg: Message) -> None:
        # Scans are probed by tracing one step (the probe is one of its body handlers).
        if is_scan(msg):
            msg.fn = _ProbeScan(msg, self.record)


class _ProbeScan:
    """A scan's runner for the probe: one step, traced abstractly (no loop, no compile);
    the carry and outputs come back as zeros of their shapes, no site is sent again.

    The body's discrete sites count as enumerated (an enumerated scan enumerates them all,
    as NumPyro's does); its plates count towards the nesting."""

    def __init__(self, msg: Message, record: _Record) -> None:
        self.msg = msg
        self.record = record

    def __call__(self, f: Any, init: Any, xs: Any, *, length: int, **_: Any) -> Any:
        from plait.control_flow import ScanContext, ScanResult, body_forms, run_step

        record = self.record
        found: list[str] = []
        parent = enclosing_loop()

        def step(carry: Any, x: Any) -> Any:
            index = jnp.zeros((), jnp.int32)
            context = ScanContext("probe", length, index, self.msg.handled_by, (), parent)
            forms: list[Callable[[], Messenger[Any, Any]]] = [
                functools.partial(_probe, record),
                functools.partial(detect_form, found),
                config_form,
                *body_forms(context),
            ]
            result = run_step(f, carry, x, context=context, forms=forms)
            return result.carry, result.output

        x0 = jax.tree_util.tree_map(
            lambda a: jax.ShapeDtypeStruct(jnp.shape(a)[1:], jnp.result_type(a)),  # type: ignore[no-untyped-call]
            xs,
        )
        carry, y = jax.eval_shape(step, init, x0)
        if found:
            record.has_enum = True
        zeros = functools.partial(jax.tree_util.tree_map, lambda a: jnp.zeros(a.shape, a.dtype))
        ys = jax.tree_util.tree_map(lambda a: jnp.zeros((length, *a.shape), a.dtype), y)
        return ScanResult(zeros(carry), ys, {})


def _placeholder(msg: Message) -> Any:
    fn = msg.fn
    support = jnp.asarray(fn.enumerate_support(expand=False))[0]
    shape = (
        tuple(msg.kwargs.get("sample_shape", ())) + tuple(fn.batch_shape) + tuple(fn.event_shape)
    )
    return jnp.broadcast_to(support, shape)


_CACHE: weakref.WeakKeyDictionary[Callable[..., Any], dict[Any, ModelInfo]] = (
    weakref.WeakKeyDictionary()
)


def _structure(tree: Any) -> Any:
    leaves, treedef = jax.tree.flatten(tree, is_leaf=lambda x: x is None)
    shapes: list[Any] = []
    for leaf in leaves:
        if leaf is None or isinstance(leaf, bool | int | float | str):
            shapes.append(leaf)
        else:
            shapes.append((tuple(np.shape(leaf)), str(getattr(leaf, "dtype", type(leaf)))))
    return treedef, tuple(shapes)


def model_info(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
) -> ModelInfo:
    """Whether ``model`` enumerates sites once ``params`` are substituted; cached.

    A model wrapped in :class:`plait.enum.enum` is taken at its word (no probe run).
    """
    if isinstance(model, enum):
        return ModelInfo(True, model.first_available_dim)
    try:
        key = (_structure((model_args, dict(model_kwargs))), frozenset(params))
        per_model = _CACHE.get(model)
    except TypeError:  # not weak-referenceable or unhashable: no cache
        return _run_probe(model, model_args, model_kwargs, params)
    if per_model is not None and key in per_model:
        return per_model[key]
    info = _run_probe(model, model_args, model_kwargs, params)
    _CACHE.setdefault(model, {})[key] = info
    return info


def _run_probe(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
) -> ModelInfo:
    record = _Record()
    run = substitute(model, data=params) if params else model
    with isolated_stack(), _probe(record):  # invisible to the handlers outside
        run(*model_args, **model_kwargs)
    return ModelInfo(record.has_enum, -record.nesting - 1)
