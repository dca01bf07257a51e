"""How deep a model's plates nest, found by one run that enumerates nothing.

Only needed when an enumerated run with a guessed ``first_available_dim`` failed because a
plate deeper than the guess met an enumerated dim (see ``_log_density.py``): enumerable
latent sites get a placeholder value (no key needed), other latent sites a fixed key, and
scan bodies are traced one step, abstractly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from plait import Message, Messenger, isolated_stack
from plait.control_flow.plugin_api import ScanCall, ScanResult
from plait.enum._scan_steps import step_aval
from plait.handlers import substitute

__all__ = ["plate_nesting"]


class _probe(Messenger[..., Any]):
    """Records the deepest plate of every site; gives latent sites values or keys."""

    def __init__(self, found: list[int]) -> None:
        self.found = found
        super().__init__()

    def process_message(self, msg: Message) -> None:
        for f in msg.cond_indep_stack:
            self.found.append(-f.dim)
        super().process_message(msg)

    def process_sample(self, msg: Message) -> None:
        if msg.value is not None or msg.is_observed:
            return
        fn = msg.fn
        if getattr(fn, "has_enumerate_support", False):
            support = jnp.asarray(fn.enumerate_support(expand=False))[0]
            batch = tuple(msg.kwargs.get("sample_shape", ())) + tuple(fn.batch_shape)
            msg.value = jnp.broadcast_to(support, batch + tuple(fn.event_shape))
        elif msg.kwargs.get("rng_key") is None:
            msg.kwargs["rng_key"] = jax.random.key(0)

    def run_scan(self, call: ScanCall, proceed: Callable[[ScanCall], ScanResult]) -> ScanResult:
        def step(carry: Any, x: Any) -> Any:
            index = jnp.zeros((), jnp.int32)
            result = call.run_step(carry, x, index=index, outer=[_probe(self.found)])
            return result.carry, result.output

        carry, y = jax.eval_shape(step, call.init, jax.tree_util.tree_map(step_aval, call.xs))
        zeros = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), carry)
        ys = jax.tree_util.tree_map(lambda a: jnp.zeros((call.length, *a.shape), a.dtype), y)
        return ScanResult(zeros, ys, {})


def plate_nesting(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
) -> int:
    """The deepest plate nesting (``-dim``) of any site of ``model``, scan bodies included."""
    found: list[int] = [0]
    run = substitute(model, data=params) if params else model
    with isolated_stack(), _probe(found):  # invisible to the handlers outside
        run(*model_args, **model_kwargs)
    return max(found)
