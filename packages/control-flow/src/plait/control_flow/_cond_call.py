"""The contract between ``cond`` / ``switch`` and the plugins that act on them: one call
(:class:`CondCall`), what running it gives (:class:`CondResult`), and how a handler claims
it (:class:`CondHandler`), parallel to ``scan``'s ``ScanCall``/``ScanHandler``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend.core import ClosedJaxpr, jaxpr_as_fun

from plait import Message, Messenger, PlateFrame
from plait.control_flow._branch import BranchResult, BranchStep, run_branch
from plait.control_flow._branch_sites import BranchSite, join_site, same_layout, split_branch
from plait.control_flow._select import combine_branches, select_tree
from plait.control_flow._step import ScanContext

__all__ = ["CondCall", "CondHandler", "CondResult"]


class CondResult(NamedTuple):
    """What running a ``cond`` gives.

    Fields:
        value: the chosen branch's output (element by element for a batched index).
        sites: the messages ``cond`` sends through the handlers outside after the branches
            ran, in order: one per site name of the branches, combined. The handlers that
            act inside control flow do not see them.

    Example:
        >>> CondResult(value=1.0, sites={}).value
        1.0
    """

    value: Any
    sites: dict[str, Message]


class _Traced(NamedTuple):
    closed: ClosedJaxpr
    out_tree: Any
    skeletons: dict[str, BranchSite]
    output_tree: Any


@dataclass(frozen=True, eq=False)
class CondCall:
    """One call of ``cond`` or ``switch``, as the plugins that act on it see it.

    Attributes:
        index: the branch to take (an int array; batched inside a plate or under
            enumeration: one branch per element). Clipped to the branches, as
            :func:`jax.lax.switch` does.
        branches: the branch functions, each called as ``branch(*operands)``.
        operands: the arguments every branch gets.
        rng_key: the cond's key (``None`` without ``seed``); every branch is seeded with it.
        handlers: the handlers the cond's message reached, outermost first.
        plates: the plates enclosing the cond.
        loop: the loop step whose body the cond runs in (``None`` at top level).
        name: the primitive and its branches, for error messages (``"cond 'true_fun'"``).

    Example:
        >>> import jax.numpy as jnp
        >>> call = CondCall(jnp.asarray(1), (lambda x: x + 1.0, lambda x: x * 10.0), (2.0,))
        >>> float(call.run().value)
        20.0
    """

    index: Any
    branches: tuple[Callable[..., Any], ...]
    operands: tuple[Any, ...]
    rng_key: Any = None
    handlers: tuple[Messenger[Any, Any], ...] = ()
    plates: tuple[PlateFrame, ...] = ()
    loop: ScanContext | None = None
    name: str = "cond"

    def step(self, branch: int) -> BranchStep:
        """The :class:`plait.ControlFlowStep` handlers acting inside see for ``branch``."""
        return BranchStep(f"{self.name} (branch {branch})", branch)

    def run_branch(
        self,
        branch: int,
        *,
        outer: Sequence[Messenger[Any, Any]] = (),
        inner: Sequence[Messenger[Any, Any]] = (),
        operands: tuple[Any, ...] | None = None,
    ) -> BranchResult:
        """Run one branch under the body forms of :attr:`handlers` and the cond's key, and
        record its sites (the building block of every way to run a cond).

        Args:
            branch: which branch.
            outer: the plugin's own handlers, entered outside the body forms.
            inner: handlers entered right around the branch.
            operands: the branch's arguments (default: :attr:`operands`).
        """
        return run_branch(
            self.branches[branch],
            self.operands if operands is None else operands,
            step=self.step(branch),
            handlers=self.handlers,
            rng_key=self.rng_key,
            loop=self.loop,
            outer=outer,
            inner=inner,
        )

    def combine(self, results: Sequence[BranchResult]) -> CondResult:
        """Every branch's result, combined element by element by :attr:`index`: each site's
        value is the chosen branch's, its distribution a
        :class:`~plait.control_flow.plugin_api.BranchDistribution` (the chosen branch's log
        density per element). A latent site the chosen branch lacks keeps the first such
        branch's value and density (it integrates out); an observed one contributes 0.

        Raises:
            SiteError: a site cannot be combined (see ``combine_branches``).
        """
        index = self.clipped_index()
        sites = combine_branches(index, [r.trace for r in results], self.name)
        value = select_tree(index, [r.output for r in results], self.name)
        return CondResult(value, sites)

    def clipped_index(self) -> jax.Array:
        """:attr:`index` as an int32 array clipped to ``[0, len(branches) - 1]``."""
        index = jnp.asarray(self.index)
        if not jnp.issubdtype(index.dtype, jnp.integer):
            index = index.astype(jnp.int32)
        return jnp.clip(index, 0, len(self.branches) - 1).astype(jnp.int32)

    def run_selected(self) -> CondResult:
        """Evaluate every branch and combine them element by element (:meth:`combine`)."""
        return self.combine([self.run_branch(j) for j in range(len(self.branches))])

    def run(self) -> CondResult:
        """The plain way: with a scalar index, and branches whose sites have the same
        structure (distribution classes, shapes: NumPyro's requirement), one
        ``lax.switch`` runs only the chosen branch; otherwise every branch is evaluated and
        combined element by element (:meth:`run_selected`)."""
        if jnp.ndim(self.index) != 0 or len(self.branches) == 1:
            return self.run_selected()
        traced = [self._trace(j) for j in range(len(self.branches))]
        layouts = [(t.skeletons, list(t.closed.out_avals)) for t in traced]
        same = all(
            same_layout(layouts[0], other) and t.output_tree == traced[0].output_tree
            for other, t in zip(layouts[1:], traced[1:], strict=True)
        )
        if not same:
            return self.run_selected()
        args = self._flat_arguments()
        funs = [jaxpr_as_fun(t.closed) for t in traced]
        leaves = lax.switch(self.clipped_index(), funs, *args)
        output, payloads = jax.tree_util.tree_unflatten(traced[0].out_tree, leaves)
        sites = {
            name: join_site(site, payloads[name]) for name, site in traced[0].skeletons.items()
        }
        return CondResult(output, sites)

    def _flat_arguments(self) -> list[Any]:
        leaves = jax.tree_util.tree_leaves(self.operands)
        key = [] if self.rng_key is None else [self.rng_key]
        return [*leaves, *key]

    def _trace(self, branch: int) -> _Traced:
        """Trace one branch into a jaxpr of (operand leaves, key) -> (output, site arrays)."""
        structure = jax.tree_util.tree_structure(self.operands)
        n_operands = len(jax.tree_util.tree_leaves(self.operands))
        found: dict[str, Any] = {}

        def run(*args: Any) -> Any:
            operands = jax.tree_util.tree_unflatten(structure, list(args[:n_operands]))
            key = args[n_operands] if len(args) > n_operands else None
            call = self.replace(operands=operands, rng_key=key)
            result = call.run_branch(branch)
            skeletons, arrays = split_branch(result.trace)
            found["skeletons"] = skeletons
            found["output_tree"] = jax.tree_util.tree_structure(result.output)
            output = jax.tree_util.tree_map(jnp.asarray, result.output)
            return output, arrays

        closed, shape = jax.make_jaxpr(run, return_shape=True)(*self._flat_arguments())
        return _Traced(
            closed,
            jax.tree_util.tree_structure(shape),
            found["skeletons"],
            found["output_tree"],
        )

    def replace(self, **changes: Any) -> CondCall:
        """A copy with some attributes changed (a plugin passing a modified call on)."""
        return dataclasses.replace(self, **changes)


@runtime_checkable
class CondHandler(Protocol):
    """A handler that runs the ``cond``/``switch`` calls it reaches its own way (plait-enum
    sums an enumerated index out).

    When a cond's message has gone through the stack, every handler it reached that has a
    ``run_cond`` method is chained, the innermost asked first: it gets the
    :class:`CondCall` and ``proceed``, which runs the cond the next way out (the next such
    handler, and finally :meth:`CondCall.run`). It returns a :class:`CondResult`, running
    branches with :meth:`CondCall.run_branch` (so every handler acting inside acts) and
    combining them with :meth:`CondCall.combine`, or ``proceed(call)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from plait import Messenger
        >>> from plait.control_flow import cond
        >>> class always_false(Messenger):
        ...     def run_cond(self, call, proceed):
        ...         return proceed(call.replace(index=jnp.asarray(1)))
        >>> with always_false():
        ...     float(cond(True, lambda x: x + 1.0, lambda x: x - 1.0, 0.0))
        -1.0
    """

    def run_cond(self, call: CondCall, proceed: Callable[[CondCall], CondResult]) -> CondResult:
        """Run ``call`` (or pass it on with ``proceed(call)``)."""
        ...
