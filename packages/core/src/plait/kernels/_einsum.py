"""Einsum in the log and max-plus semirings, in opt_einsum's contraction order.

``logsumexp_einsum("ab,bc->ac", x, y)[a, c] = log Σ_b exp(x[a, b] + y[b, c])``:
the operation behind tensor variable elimination (Obermeyer et al. 2019), where
every factor is a log-density over some enumerated variables. The contraction
order comes from ``opt_einsum.contract_path``; each pairwise step is one ordinary
einsum of rescaled exponentials (see `logsumexp_einsum`). ``max_einsum`` is the
max-plus counterpart (MAP / Viterbi over a factor graph).
"""

from collections.abc import Callable, Sequence

import jax.numpy as jnp
import opt_einsum
from jax import lax
from jaxtyping import Array, ArrayLike, Float

from plait.kernels._semiring import HIGHEST, finite_or_zero, safe_log

__all__ = ["logsumexp_einsum", "max_einsum"]

_Step = Callable[[list[Array], list[str], str], Array]


def logsumexp_einsum(
    equation: str, *operands: Float[ArrayLike, "..."], optimize: str = "auto"
) -> Float[Array, "..."]:
    """Einsum in the log semiring: ``log(einsum(equation, *map(exp, operands)))``.

    Each pairwise step ``x[X], y[Y] -> z[Z]`` is stable: with ``m_y`` the
    maximum of ``y`` over its indices absent from ``X`` and ``c = x + m_y``,
    ``z = m_c + log einsum(exp(c - m_c), exp(y - m_y))`` where ``m_c`` is the
    maximum of ``c`` over its indices absent from ``Z``. Within every slice of the
    result along ``x``'s kept indices the largest term is exactly 1, so no slice
    underflows as a whole; an entry more than ~87 nats (float32) below the largest
    of its slice may come out as ``-inf`` (``x`` is whichever operand opt_einsum
    lists first: for ``"ab,bc->ac"`` the slice is a row or a column). The shifts
    carry no gradient (the result does not depend on them) and ``-inf`` entries
    give no NaN.

    Args:
        equation: an einsum equation with explicit letters (``"ab,bc->ac"``; the
            output may be omitted, as in ``numpy.einsum``). Repeated letters in
            one operand take a diagonal. Ellipses are not supported.
        *operands: log-valued arrays of one floating dtype.
        optimize: the ``opt_einsum.contract_path`` strategy (static), e.g.
            ``"auto"``, ``"greedy"``, ``"optimal"``.

    Returns:
        The log-semiring contraction, with the output's indices in order.

    Raises:
        ValueError: for a malformed equation, an ellipsis, or operand shapes that
            do not match it.

    Example:
        >>> import jax.numpy as jnp
        >>> from plait.kernels import logsumexp_einsum
        >>> x = jnp.log(jnp.array([[1.0, 2.0], [3.0, 4.0]]))
        >>> y = jnp.log(jnp.array([1.0, 10.0]))
        >>> z = logsumexp_einsum("ab,b->a", x, y)  # log([1*1 + 2*10, 3*1 + 4*10])
        >>> bool(jnp.allclose(z, jnp.log(jnp.array([21.0, 43.0]))))
        True
    """
    return _contract(equation, operands, optimize, _log_step)


def max_einsum(
    equation: str, *operands: Float[ArrayLike, "..."], optimize: str = "auto"
) -> Float[Array, "..."]:
    """Einsum in the max-plus semiring: products become sums, sums become maxima.

    ``max_einsum("ab,bc->ac", x, y)[a, c] = max_b x[a, b] + y[b, c]``; exact.
    Each pairwise step broadcasts both operands over the union of their indices,
    so its memory is the product of those sizes.

    Args:
        equation: as for `logsumexp_einsum`.
        *operands: log-valued arrays of one floating dtype.
        optimize: the ``opt_einsum.contract_path`` strategy (static).

    Returns:
        The max-plus contraction.

    Example:
        >>> import jax.numpy as jnp
        >>> from plait.kernels import max_einsum
        >>> x = jnp.array([[0.0, -1.0], [-2.0, 5.0]])
        >>> max_einsum("ab,b->a", x, jnp.array([1.0, 0.0]))
        Array([1., 5.], dtype=float32)
    """
    return _contract(equation, operands, optimize, _max_step)


def _contract(equation: str, operands: Sequence[ArrayLike], optimize: str, step: _Step) -> Array:
    arrays = [jnp.asarray(x) for x in operands]
    inputs, output = _parse(equation, arrays)
    dtypes = {x.dtype for x in arrays}
    if len(dtypes) != 1 or not jnp.issubdtype(arrays[0].dtype, jnp.floating):
        raise TypeError(f"operands must share one floating dtype; got {sorted(map(str, dtypes))}.")
    # Repeated letters in one operand: take the diagonal first (pure indexing,
    # exact in log space), so that every later step sees distinct letters.
    for k, (x, letters) in enumerate(zip(arrays, inputs, strict=True)):
        unique = "".join(dict.fromkeys(letters))
        if unique != letters:
            arrays[k] = jnp.einsum(f"{letters}->{unique}", x)
            inputs[k] = unique
    shapes = [x.shape for x in arrays]
    _, info = opt_einsum.contract_path(
        ",".join(inputs) + "->" + output, *shapes, shapes=True, optimize=optimize
    )
    for contract_inds, _, einsum_str, _, _ in info.contraction_list:
        lhs, result = einsum_str.split("->")
        ops = [arrays.pop(i) for i in contract_inds]
        for i in contract_inds:
            inputs.pop(i)
        letters = lhs.split(",")
        while len(ops) > 2:  # opt_einsum paths are pairwise; be safe anyway
            keep = set(result).union(*letters[2:])
            pair_out = "".join(c for c in dict.fromkeys(letters[0] + letters[1]) if c in keep)
            ops[:2] = [step(ops[:2], letters[:2], pair_out)]
            letters[:2] = [pair_out]
        arrays.append(step(ops, letters, result))
        inputs.append(result)
    (out,) = arrays
    return out


def _log_step(ops: list[Array], letters: list[str], out: str) -> Array:
    if len(ops) == 2:
        (x, y), (xl, yl) = ops, letters
        if set(xl) <= set(yl):
            (y, x), (yl, xl) = ops, letters
        if set(yl) <= set(xl):  # a broadcast sum: one operand, then as below
            ops, letters = [x + _align(y, yl, xl)], [xl]
    if len(ops) == 1:
        (x,), (xl,) = ops, letters
        if set(xl) == set(out):  # nothing to sum: a transpose
            return jnp.einsum(f"{xl}->{out}", x)
        m = _shift_over(x, xl, out)
        total = jnp.einsum(f"{xl}->{out}", jnp.exp(x - m), precision=HIGHEST)
        return safe_log(total) + _align(m, xl, out)
    (x, y), (xl, yl) = ops, letters
    # m_y: y's maximum over its letters absent from x. It stays -inf on dead
    # slices of y, which keeps them out of the shift of c below.
    y_axes = tuple(k for k, c in enumerate(yl) if c not in xl)
    my = lax.stop_gradient(jnp.max(y, axis=y_axes, keepdims=True))
    shared = "".join(c for c in yl if c in xl)
    c = x + _align(jnp.squeeze(my, y_axes), shared, xl)
    mc = _shift_over(c, xl, out)
    total = jnp.einsum(
        f"{xl},{yl}->{out}", jnp.exp(c - mc), jnp.exp(y - finite_or_zero(my)), precision=HIGHEST
    )
    return safe_log(total) + _align(mc, xl, out)


def _max_step(ops: list[Array], letters: list[str], out: str) -> Array:
    union = "".join(dict.fromkeys("".join(letters)))
    total = _align(ops[0], letters[0], union, squeeze=False)
    for x, xl in zip(ops[1:], letters[1:], strict=True):
        total = total + _align(x, xl, union, squeeze=False)
    axes = tuple(k for k, c in enumerate(union) if c not in out)
    if axes:
        total = jnp.max(total, axis=axes)
    kept = "".join(c for c in union if c in out)
    return jnp.einsum(f"{kept}->{out}", total) if kept != out else total


def _shift_over(x: Array, letters: str, keep: str) -> Array:
    """Stop-gradient max of ``x`` over its letters absent from ``keep`` (kept as 1s)."""
    axes = tuple(k for k, c in enumerate(letters) if c not in keep)
    # Over no axes the maximum is x itself.
    return finite_or_zero(lax.stop_gradient(jnp.max(x, axis=axes, keepdims=True) if axes else x))


def _align(x: Array, letters: str, target: str, *, squeeze: bool = True) -> Array:
    """``x`` (indexed by ``letters``) laid out over ``target``'s letters.

    With ``squeeze``, axes of ``x`` whose letter is not in ``target`` must have
    size 1 and are dropped (a keepdims reduction); the result has ``target``'s
    letters in order, with size 1 where ``x`` lacks a letter.
    """
    if squeeze:
        drop = tuple(k for k, c in enumerate(letters) if c not in target)
        if drop:
            x = jnp.squeeze(x, drop)
            letters = "".join(c for c in letters if c in target)
    present = [c for c in target if c in letters]
    x = jnp.transpose(x, [letters.index(c) for c in present])
    sizes = dict(zip(present, x.shape, strict=True))
    return jnp.reshape(x, tuple(sizes.get(c, 1) for c in target))


def _parse(equation: str, operands: Sequence[Array]) -> tuple[list[str], str]:
    equation = equation.replace(" ", "")
    if "." in equation:
        raise ValueError(
            f"ellipses are not supported in {equation!r}: name every axis with a letter."
        )
    lhs, arrow, output = equation.partition("->")
    inputs = lhs.split(",")
    if not arrow:
        counts = {c: lhs.count(c) for c in set(lhs.replace(",", ""))}
        output = "".join(sorted(c for c, n in counts.items() if n == 1))
    if len(inputs) != len(operands):
        raise ValueError(
            f"equation {equation!r} names {len(inputs)} operands; got {len(operands)}."
        )
    letters = set(lhs.replace(",", ""))
    if not all(c.isalpha() for c in letters | set(output)):
        raise ValueError(f"equation {equation!r}: use letters for indices.")
    if not set(output) <= letters or len(set(output)) != len(output):
        raise ValueError(
            f"equation {equation!r}: every output letter must appear once and in an input."
        )
    sizes: dict[str, int] = {}
    for letters_k, x in zip(inputs, operands, strict=True):
        if len(letters_k) != x.ndim:
            raise ValueError(
                f"equation {equation!r}: operand {letters_k!r} has shape {x.shape}, "
                f"{x.ndim} axes for {len(letters_k)} letters."
            )
        for c, n in zip(letters_k, x.shape, strict=True):
            if sizes.setdefault(c, n) != n:
                raise ValueError(
                    f"equation {equation!r}: index {c!r} has sizes {sizes[c]} and {n}."
                )
    return inputs, output
