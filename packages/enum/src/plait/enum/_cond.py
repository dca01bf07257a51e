"""``cond`` / ``switch`` under enumeration: an enumerated index sums the branches out.

Every branch is evaluated with its own discrete sites enumerated in the current markov
frame (a site that several branches share takes one dim), and the branches are combined
element by element by the index (plait-control-flow's ``CondCall.combine``). When the index
is an enumerated discrete site, each combined site's log-factor is the chosen branch's for
every value of the index, so tensor variable elimination sums the branches out, weighted by
the index's distribution, in log space.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from plait import Message, Messenger
from plait.control_flow.plugin_api import CondCall, CondResult
from plait.enum._dims import DimState
from plait.enum._keys import DIM_NAMES, ENUM_DIM
from plait.enum._site_enum import (
    check_plate_dims,
    enumerate_config,
    enumerate_site,
    wants_enumeration,
)
from plait.errors import SiteError
from plait.handlers import infer_config

__all__ = ["enum_branch", "run_enumerated_cond"]


class enum_branch(Messenger[..., Any]):
    """Enumerate a branch's marked sites in the current frame, as ``prefix + name``; a name
    another branch of the same cond enumerated reuses that branch's dim (``dims``)."""

    def __init__(self, state: DimState, dims: dict[str, int], prefix: str = "") -> None:
        self.state = state
        self.dims = dims
        self.prefix = prefix
        super().__init__()

    def process_sample(self, msg: Message) -> None:
        state = self.state
        state.note(msg.cond_indep_stack)
        if not wants_enumeration(msg):
            return
        state.choose_first_dim(msg.cond_indep_stack)
        check_plate_dims(msg, state, enumerating=True)
        name = msg.name
        variable = self.prefix + (name or "?")
        shared = self.dims.get(variable)
        msg.name = variable
        saved = state.first_available_dim
        try:
            if shared is not None:
                # Free the dim the other branch took for this variable, and allocate it
                # again: the variable is one, whichever branch draws it.
                state.current.dims.pop(shared, None)
                state.first_available_dim = shared
            enumerate_site(msg, state)
        finally:
            state.first_available_dim = saved
            msg.name = name
        if shared is None:
            self.dims[variable] = msg.stash[ENUM_DIM]

    def postprocess_sample(self, msg: Message) -> None:
        msg.stash[DIM_NAMES] = self.state.visible()


def _config_form() -> Messenger[Any, Any]:
    """``config_enumerate`` inside the branches (every discrete latent site is summed out,
    as in an enumerated scan's body)."""
    return infer_config(config_fn=functools.partial(enumerate_config, "parallel"))


class _detect(Messenger[..., Any]):
    def __init__(self, found: list[str]) -> None:
        self.found = found
        super().__init__()

    def process_sample(self, msg: Message) -> None:
        if wants_enumeration(msg) and msg.name is not None:
            self.found.append(msg.name)


def _enumerates(call: CondCall) -> bool:
    """Whether a branch has a site to enumerate (each traced abstractly, not run)."""
    found: list[str] = []
    leaves, structure = jax.tree_util.tree_flatten(call.operands)

    for j in range(len(call.branches)):

        def run(*args: Any, j: int = j) -> Any:
            operands = jax.tree_util.tree_unflatten(structure, list(args))
            return call.run_branch(
                j, outer=[_detect(found), _config_form()], operands=operands
            ).output

        try:
            jax.eval_shape(run, *leaves)
        except SiteError:
            return True  # let the real run report it
        if found:
            return True
    return False


def run_enumerated_cond(
    call: CondCall,
    state: DimState,
    proceed: Callable[[CondCall], CondResult],
    prefix: str = "",
) -> CondResult:
    """Run ``call`` with its branches' discrete sites enumerated, combined by its index.

    A cond whose index is a scalar and whose branches enumerate nothing runs as it would
    without enumeration (``proceed``).
    """
    if jnp.ndim(call.index) == 0 and not _enumerates(call):
        return proceed(call)
    dims: dict[str, int] = {}
    results = [
        call.run_branch(j, outer=[enum_branch(state, dims, prefix), _config_form()])
        for j in range(len(call.branches))
    ]
    combined = call.combine(results)
    visible = state.visible()
    for site in combined.sites.values():
        if site.type == "sample":  # its log-factor has the dims of every branch's variables
            site.stash[DIM_NAMES] = visible
    return combined
