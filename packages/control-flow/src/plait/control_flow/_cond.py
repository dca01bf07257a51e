"""``cond`` and ``switch``: ``lax.cond`` / ``lax.switch`` as primitives whose branch sites
every plait handler sees."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import jax.numpy as jnp

from plait import Message, apply_stack, current_stack, isolated_stack
from plait.control_flow._cond_call import CondCall, CondHandler, CondResult
from plait.control_flow._errors import ControlFlowError, ControlFlowTypeError
from plait.control_flow._sites import PRIMITIVE
from plait.control_flow._step import active_context

__all__ = ["cond", "switch"]

R = TypeVar("R")


def _name(f: Callable[..., Any]) -> str:
    return str(getattr(f, "__name__", type(f).__name__))


def _run_claimed(msg: Message, call: CondCall, rng_key: Any = None) -> CondResult:
    """The default action of a cond's message: the handlers it reached that run conds
    their own way (:class:`CondHandler`), innermost first, then the plain way."""
    call = call.replace(
        rng_key=rng_key,
        handlers=msg.handled_by,
        plates=tuple(msg.cond_indep_stack),
        loop=active_context().get(),
    )
    proceed: Callable[[CondCall], CondResult] = CondCall.run
    for handler in msg.handled_by:  # outermost first, so the innermost is asked first
        if isinstance(handler, CondHandler):
            proceed = functools.partial(handler.run_cond, proceed=proceed)
    return proceed(call)


def _switch(
    index: Any, branches: Sequence[Callable[..., Any]], operands: tuple[Any, ...], name: str
) -> Any:
    if not branches:
        raise ControlFlowError(f"{name}: needs at least one branch.")
    for j, branch in enumerate(branches):
        if not callable(branch):
            raise ControlFlowTypeError(
                f"{name}: branch {j} is a {type(branch).__name__}, not a function; pass "
                "functions that take the operands."
            )
    index = jnp.asarray(index)
    if not (jnp.issubdtype(index.dtype, jnp.integer) or jnp.issubdtype(index.dtype, jnp.bool_)):
        raise ControlFlowTypeError(
            f"{name}: the branch index must be an integer (or bool) array, got dtype {index.dtype}."
        )
    call = CondCall(index, tuple(branches), operands, name=name)
    if not current_stack():
        return call.run().value
    msg = Message(type="control_flow", kwargs={"rng_key": None})
    msg.stash[PRIMITIVE] = "cond"
    msg.fn = functools.partial(_run_claimed, msg, call)
    apply_stack(msg)
    value = msg.value
    if not isinstance(value, CondResult):
        raise ControlFlowTypeError(
            f"{name}: a handler set the value of the control_flow message to a "
            f"{type(value).__name__}; it must be a plait.control_flow.plugin_api.CondResult."
        )
    inside = [h for h in msg.handled_by if h.acts_inside_loops()]
    with isolated_stack(without=inside):
        for site in value.sites.values():
            apply_stack(site)
    return value.value


def cond(pred: Any, true_fun: Callable[[Any], R], false_fun: Callable[[Any], R], operand: Any) -> R:
    """``true_fun(operand)`` if ``pred`` else ``false_fun(operand)`` (as
    :func:`jax.lax.cond`), with the sample, deterministic, param and mutable sites of both
    branches visible to the handlers outside.

    As NumPyro's ``cond``: the sites of both branches are traced (a site is one site,
    whichever branch made it), ``seed`` gives the cond one key that seeds either branch
    (the draws equal NumPyro's for the same key), and ``substitute``, ``condition``,
    ``replay``, ``do``, ``scope``, ``plate`` and the other handlers that act inside control
    flow reach into the branches; after the branches ran, each site is sent once more
    through ``trace``, ``mask``, ``scale``, ``infer_config`` and ``block``.

    Beyond NumPyro:

    - a **batched** ``pred`` (inside a plate, or an enumerated discrete site under
      plait-enum) chooses per element: every branch is evaluated and each site's value and
      log density are the chosen branch's, element by element; under enumeration this sums
      the branches out;
    - the branches may use **different distribution classes** for a site, and a site may
      be in some branches only (a latent one keeps the first such branch's value and density
      where another branch runs, so it integrates out; an observed one adds nothing there).
      A site cannot be combined only when its branches disagree on what it is: its type,
      being observed, plates, event shape, value dtype, or (latent) support.

    With a scalar ``pred`` and branches of the same structure, one ``lax.switch`` runs only
    the chosen branch, as NumPyro's ``cond`` does; otherwise every branch is evaluated (so
    keep every branch's density finite where it is not taken: gradients see it).

    Args:
        pred: a bool (or number) scalar, or a batched array (one choice per element).
        true_fun: the branch taken where ``pred`` is true.
        false_fun: the branch taken where ``pred`` is false.
        operand: the argument both branches get (any pytree).

    Returns:
        The chosen branch's output (per element for a batched ``pred``).

    Raises:
        ControlFlowTypeError: the branches return different structures or dtypes (a
            ``TypeError``, as from ``lax.cond``).
        SiteError: a site of the branches cannot be combined (see above).

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.control_flow import cond
        >>> from plait.handlers import seed, trace
        >>> def model():
        ...     cluster = sample("cluster", dist.Normal())
        ...     return cond(cluster > 0, lambda _: sample("x", dist.Normal(20.0)),
        ...                 lambda _: sample("x", dist.Normal(0.0)), None)
        >>> tr = trace(seed(model, rng_seed=0)).get_trace()
        >>> list(tr), bool((tr["x"].value > 10) == (tr["cluster"].value > 0))
        (['cluster', 'x'], True)
    """
    index = jnp.where(jnp.asarray(pred), 0, 1)
    name = f"cond '{_name(true_fun)}'"
    return _switch(index, (true_fun, false_fun), (operand,), name)  # type: ignore[no-any-return]


def switch(index: Any, branches: Sequence[Callable[..., R]], *operands: Any) -> R:
    """``branches[index](*operands)`` (as :func:`jax.lax.switch`: ``index`` is clipped to
    the branches), with every branch's sites visible to the handlers outside; :func:`cond`
    over any number of branches, with the same semantics (a batched ``index`` chooses per
    element; an enumerated discrete ``index`` sums the branches out under plait-enum).

    Args:
        index: an int scalar, or a batched int array (one choice per element).
        branches: the branch functions.
        *operands: the arguments every branch gets.

    Returns:
        The chosen branch's output (per element for a batched ``index``).

    Example:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.control_flow import switch
        >>> from plait.handlers import trace
        >>> def model(k):
        ...     emissions = [lambda: dist.Normal(0.0, 1.0), lambda: dist.Laplace(0.0, 1.0),
        ...                  lambda: dist.StudentT(3.0)]
        ...     switch(k, [lambda e=e: sample("y", e(), obs=0.5) for e in emissions])
        >>> tr = trace(model).get_trace(jnp.array([0, 1, 2]))
        >>> [round(float(v), 3) for v in tr["y"].fn.log_prob(tr["y"].value)]
        [-1.044, -1.193, -1.161]
    """
    name = f"switch over {', '.join(repr(_name(b)) for b in branches)}"
    return _switch(index, tuple(branches), operands, name)  # type: ignore[no-any-return]
