"""How MCMC runs a kernel's chains: the cache of compiled programs, the initial states,
and the chunked loop over warm-up and sampling steps (``MCMC`` holds one runner)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.sharding import Mesh

from plait.infer._args import CONCRETE_VALUE_ERRORS, args_digest, split_args
from plait.infer._chains import gathered, place_chains, take_chain
from plait.infer._collect import FieldPlan, Programs, build_programs
from plait.infer._kernel import MCMCKernel
from plait.infer._progress import progress

__all__ = ["ChainRunner"]


@dataclass
class ChainRunner:
    """The compiled programs of one ``MCMC`` and the loops that run them.

    Programs are cached by the static part and the shapes of the model's arguments
    (traced arguments), or by their content when the model needs concrete values from
    them (``constant`` signatures, found when tracing raises a concretization error).
    """

    kernel: MCMCKernel[Any]
    num_warmup: int
    num_chains: int
    thinning: int
    chain_method: str
    mesh: Mesh | None
    progress_bar: bool
    jit_model_args: bool
    postprocess_fn: Callable[[Any], Any] | None
    _args: tuple[Any, ...] = ()
    _kwargs: dict[str, Any] = field(default_factory=dict)
    _programs: dict[Hashable, Programs] = field(default_factory=dict)
    _constant_signatures: set[Hashable] = field(default_factory=set)
    _signature: Any = None

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """The model arguments of the coming run."""
        self._args, self._kwargs = args, kwargs

    def get_programs(
        self, plan: FieldPlan, length: int, prepared: Hashable
    ) -> tuple[Programs, tuple[Any, ...]]:
        dynamic, static = split_args(self._args, self._kwargs)
        traced_sig = (static, tuple((np.shape(d), jnp.result_type(d)) for d in dynamic))
        common = (
            plan,
            length,
            self.chain_method,
            self.num_warmup,
            prepared,
            id(self.postprocess_fn),
        )
        constant = traced_sig in self._constant_signatures and not self.jit_model_args
        key: Hashable = (
            ("constant", args_digest(self._args, self._kwargs), common)
            if constant
            else ("traced", traced_sig, common)
        )
        programs = self._programs.get(key)
        if programs is None:
            programs = build_programs(
                self.kernel,
                num_warmup=self.num_warmup,
                plan=plan,
                thinning=self.thinning,
                length=length,
                mesh=self.mesh,
                static=None if constant else static,
                constant_args=(self._args, self._kwargs) if constant else None,
                postprocess_fn=self.postprocess_fn,
            )
            self._programs[key] = programs
        self._signature = (traced_sig, common)
        return programs, (() if constant else dynamic)

    def init(
        self,
        plan: FieldPlan,
        length: int,
        prepared: Hashable,
        keys: Array,
        init_params: Any,
    ) -> tuple[Any, Programs, tuple[Any, ...]]:
        kernel = self.kernel
        init_params = self._chain_init_params(init_params)
        programs, dynamic = self.get_programs(plan, length, prepared)
        try:
            ahead = self._compile_chunk_ahead(programs, keys, init_params, dynamic)
            state = self._call_init(programs, keys, init_params, dynamic)
        except CONCRETE_VALUE_ERRORS:
            if self.jit_model_args:
                raise
            # The model reads concrete values from its arguments: hold them as constants.
            self._constant_signatures.add(self._signature[0])
            programs, dynamic = self.get_programs(plan, length, prepared)
            ahead = self._compile_chunk_ahead(programs, keys, init_params, dynamic)
            state = self._call_init(programs, keys, init_params, dynamic)
        try:
            state = kernel.check_init(jax.device_get(gathered(state)), self._args, self._kwargs)
        finally:
            if ahead is not None:
                ahead.join()
        return state, programs, dynamic

    def _compile_chunk_ahead(
        self, programs: Programs, keys: Array, init_params: Any, dynamic: tuple[Any, ...]
    ) -> threading.Thread | None:
        """Compile the chunk program in a thread while the initial states are compiled
        and computed (XLA compiles without the GIL): the two largest compilations of a
        first run overlap. The chunk is lowered for the state ``init`` returns (as the
        host arrays :meth:`init` passes on), so its first call finds it compiled.

        Only the first run of a program compiles it; with the chains in turn, over a
        mesh, or for an ensemble kernel, the chunk compiles when first called."""
        if (
            programs.compiled_ahead
            or self.mesh is not None
            or self.chain_method == "sequential"
            or self.kernel.is_ensemble_kernel
        ):
            return None
        programs.compiled_ahead = True
        shapes = programs.init.trace(keys, init_params, dynamic).out_info  # type: ignore[attr-defined]
        state = jax.tree_util.tree_map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),  # type: ignore[no-untyped-call,unused-ignore]
            shapes,
        )
        lowered = programs.chunk.lower(state, jnp.asarray(programs.length), dynamic)  # type: ignore[attr-defined]

        def compile_chunk() -> None:
            # A failure here is raised again by the chunk's first call, which compiles it.
            with contextlib.suppress(Exception):
                lowered.compile()

        thread = threading.Thread(target=compile_chunk, name="plait-compile-chunk", daemon=True)
        thread.start()
        return thread

    def _call_init(
        self, programs: Programs, keys: Array, init_params: Any, dynamic: tuple[Any, ...]
    ) -> Any:
        if self.kernel.is_ensemble_kernel:
            return programs.init(keys, init_params, dynamic)
        if self.chain_method == "sequential":
            parts = [
                programs.init(keys[c : c + 1], take_chain(init_params, c), dynamic)
                for c in range(self.num_chains)
            ]
            return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *parts)
        return programs.init(keys, init_params, dynamic)

    def _chain_init_params(self, init_params: Any) -> Any:
        if init_params is None:
            return None
        init_params = jax.tree_util.tree_map(jnp.asarray, init_params)
        if self.kernel.is_ensemble_kernel:
            return init_params
        leaves = jax.tree_util.tree_leaves(init_params)
        if self.num_chains > 1:
            if leaves and jnp.shape(leaves[0])[:1] != (self.num_chains,):
                raise ValueError(
                    "`init_params` must have the same leading dimension as `num_chains`."
                )
            return init_params
        return jax.tree_util.tree_map(lambda x: x[None], init_params)

    def run_phase(
        self,
        programs: Programs,
        state: Any,
        dynamic: tuple[Any, ...],
        steps: int,
        keep: bool,
        phase: str,
    ) -> tuple[Any, Any]:
        if (
            self.chain_method == "sequential"
            and not self.kernel.is_ensemble_kernel
            and self.num_chains > 1
        ):
            parts = [
                self._run_steps(
                    programs, take_chain(state, c), dynamic, steps, keep, f"chain {c} {phase}"
                )
                for c in range(self.num_chains)
            ]
            states = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *[p[0] for p in parts])
            draws = None
            if keep:
                draws = jax.tree_util.tree_map(
                    lambda *xs: jnp.concatenate(xs), *[p[1] for p in parts]
                )
            return states, draws
        return self._run_steps(
            programs, place_chains(state, self.mesh), dynamic, steps, keep, phase
        )

    def _run_steps(
        self,
        programs: Programs,
        state: Any,
        dynamic: tuple[Any, ...],
        steps: int,
        keep: bool,
        label: str,
    ) -> tuple[Any, Any]:
        """``steps`` kernel steps in chunks; with ``keep``, the kept draws ``(chain, draw,
        ...)`` (NumPyro's: the last of every block of ``thinning``, blocks ending at the
        last step)."""
        t = self.thinning
        head = steps % t if keep else 0
        pieces: list[Any] = []
        ensemble = self.kernel.is_ensemble_kernel
        show = self.progress_bar and (self.num_chains == 1 or ensemble)
        with progress(steps, label, self.progress_bar) as bar:
            if head:
                state, _ = programs.chunk(state, jnp.asarray(head), dynamic)
                bar.update(head)
            done = head
            while done < steps:
                count = min(programs.length, steps - done)
                state, buffers = programs.chunk(state, jnp.asarray(count), dynamic)
                if keep:
                    axis = 0 if ensemble else 1
                    pieces.append(gathered(_first_rows(buffers, count // t, axis)))
                else:
                    jax.block_until_ready(state)  # type: ignore[no-untyped-call,unused-ignore]
                done += count
                bar.update(count)
                if show:
                    one = state if ensemble else take_chain(state, 0, keep_axis=False)
                    bar.set_postfix_str(self.kernel.get_diagnostics_str(jax.device_get(one)))
        state = gathered(state)
        if not keep:
            return state, None
        axis = 0 if ensemble else 1
        draws = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs, axis=axis), *pieces)
        if ensemble:
            draws = jax.tree_util.tree_map(
                lambda x: jnp.swapaxes(x, 0, 1) if x.ndim >= 2 else x, draws
            )
        return state, draws


def _first_rows(buffers: Any, rows: int, axis: int) -> Any:
    """The first ``rows`` entries of each buffer along ``axis``."""

    def take(x: Array) -> Array:
        index = [slice(None)] * x.ndim
        index[axis] = slice(0, rows)
        return x[tuple(index)]

    return jax.tree_util.tree_map(take, buffers)
