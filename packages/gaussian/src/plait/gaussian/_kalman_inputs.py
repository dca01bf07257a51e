"""From the chain's coefficients to the inputs of `plait.kernels`' Kalman kernels, and back.

Per step, with ``c`` the latent carry going in, ``z`` the chain sites' values and ``e``,
``η`` standard normal noise (every matrix per chain, per step)::

    z  = A_c c + A_z z + b + L e         (each site's mean reads c and earlier sites)
    c' = G_c c + G_z z + h               (the latent carry going out)
    y  = C_c c + C_z z + d + U η         (the emissions)

``A_z`` is strictly block-lower-triangular (sites in order), so ``z = P c + p + R e`` with
``(I - A_z) [P, p, R] = [A_c, b, L]`` solved by forward substitution. The Kalman state
after a step is ``X = (c', z_extra, c_obs)``: the new carry, the chain elements the
emissions read that the carry does not hold as exact copies, and the carry elements
going in that they read and the new carry does not copy (see ``_provenance.py``); in
the common case (``return x, ...``) it is the carry alone. Then::

    X_t = F X_{t-1} + c_X + S_X ε,       y_t = H X_t + d + U η

the kernels' ``AffineGaussian`` transition and emission. Masked emission elements get a
zero row of ``H``, a unit noise and a zero observation, which adds exactly
``log N(0 | 0, 1)`` each: it is subtracted again.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jax import Array

from plait.gaussian._dists import gaussian_parts
from plait.gaussian._evaluate import ChainAxes, Pieces
from plait.gaussian._structure import ChainPlan
from plait.kernels import AffineGaussian

__all__ = ["KalmanInputs", "Layout", "kalman_inputs", "layout"]

LOG_2PI = 1.8378770664093453


class Layout(NamedTuple):
    """Where each chain element sits in the Kalman state (static, per chain).

    Attributes:
        carry_sizes: elements per latent carry leaf (one chain).
        site_sizes: elements per chain site (one chain).
        z_index: per chain element, its position in the state, or -1 (not kept).
        c_index: per element of the latent carry going in, its position in the state
            (or -1): where the emissions read it.
        extra: the chain elements kept in ``z_extra``, in order.
        c_obs: the carry elements going in kept in ``c_obs``, in order.
        size: the state's size.
    """

    carry_sizes: tuple[int, ...]
    site_sizes: tuple[int, ...]
    z_index: np.ndarray
    c_index: np.ndarray
    extra: np.ndarray
    c_obs: np.ndarray
    size: int


def layout(plan: ChainPlan, batch: int, full: bool) -> Layout:
    """The state layout; ``full`` keeps every chain element (to smooth or draw them)."""
    sizes = [s // batch for s in plan.source_sizes]
    n_lc = len(plan.latent_carry)
    carry_sizes, site_sizes = tuple(sizes[:n_lc]), tuple(sizes[n_lc:])
    n_c, n_z = sum(carry_sizes), sum(site_sizes)
    copy_of = np.concatenate(
        [np.reshape(ids, -1) for ids in plan.carry_copies] or [np.zeros((0,), np.int64)]
    ).astype(np.int64)
    site_start = np.cumsum((0, *site_sizes))
    carry_start = np.cumsum((0, *carry_sizes))
    needed_z: set[int] = set()
    needed_c: set[int] = set()
    for sites, leaves in plan.needs:
        for i in sites:
            needed_z.update(range(site_start[i], site_start[i + 1]))
        for k in leaves:
            needed_c.update(range(carry_start[k], carry_start[k + 1]))
    if full:
        needed_z = set(range(n_z))
    z_index = np.full(n_z, -1, np.int64)
    c_index = np.full(n_c, -1, np.int64)
    extra: list[int] = []
    c_obs: list[int] = []
    for e in sorted(needed_z):
        where = np.flatnonzero(copy_of == n_c + e)
        if where.size:
            z_index[e] = where[0]
        else:
            z_index[e] = n_c + len(extra)
            extra.append(e)
    for e in sorted(needed_c):
        where = np.flatnonzero(copy_of == e)
        if where.size:
            c_index[e] = where[0]
        else:
            c_obs.append(e)
    for i, e in enumerate(c_obs):
        c_index[e] = n_c + len(extra) + i
    return Layout(
        carry_sizes,
        site_sizes,
        z_index,
        c_index,
        np.asarray(extra, np.int64),
        np.asarray(c_obs, np.int64),
        n_c + len(extra) + len(c_obs),
    )


class KalmanInputs(NamedTuple):
    """The arguments of the Kalman kernels for one chain (with a leading batch axis ``B``),
    and the log-likelihood correction for masked elements."""

    init_mean: Array
    init_scale_tril: Array
    transition: AffineGaussian
    emission: AffineGaussian
    observations: Array
    correction: Array


def _cat(arrays: list[Array], axis: int) -> Array:
    """Concatenate arrays with leading ``(time, B)`` axes, broadcasting the time axis."""
    if len(arrays) == 1:
        return arrays[0]
    steps = max(a.shape[0] for a in arrays)
    full = [jnp.broadcast_to(a, (steps, *a.shape[1:])) for a in arrays]
    return jnp.concatenate(full, axis=axis)


def _block_root(root: Array, kind: str) -> Array:
    """The square-root matrix of a site's noise from its chain-major root: ``(., B, d)``
    standard deviations, or ``(., B, m, k, k)`` triangular blocks."""
    if kind == "diag":
        return root[..., :, None] * jnp.eye(root.shape[-1], dtype=root.dtype)
    m, k = root.shape[-3], root.shape[-1]
    eye = jnp.eye(m, dtype=root.dtype)
    blocks = jnp.einsum("ij,...iab->...iajb", eye, root)
    return jnp.reshape(blocks, (*root.shape[:-3], m * k, m * k))


def _block_diag(blocks: list[Array]) -> Array:
    steps = max(b.shape[0] for b in blocks)
    lead = blocks[0].shape[1:-2]
    n = sum(b.shape[-1] for b in blocks)
    out = jnp.zeros((steps, *lead, n, n), blocks[0].dtype)
    start = 0
    for b in blocks:
        size = b.shape[-1]
        out = out.at[..., start : start + size, start : start + size].set(b)
        start += size
    return out


def _square(m: Array, n: int) -> Array:
    """An ``n x n`` square root of ``m mᵀ`` for ``m`` of shape ``(..., n, r)``."""
    r = m.shape[-1]
    if r <= n:
        pad = jnp.zeros((*m.shape[:-1], n - r), m.dtype)
        return jnp.concatenate([m, pad], axis=-1)
    upper = jnp.linalg.qr(jnp.swapaxes(m, -1, -2), mode="r")
    return jnp.swapaxes(upper[..., :n, :], -1, -2)


def _onehot(index: np.ndarray, width: int, dtype: Any) -> Array:
    out = np.zeros((len(index), width))
    for row, col in enumerate(index):
        if col >= 0:
            out[row, col] = 1.0
    return jnp.asarray(out, dtype)


def _initial(
    plan: ChainPlan, axes: ChainAxes, lay: Layout, init: list[Any], dtype: Any
) -> tuple[Array, Array]:
    means, roots = [], []
    for j, size in zip(plan.latent_carry, lay.carry_sizes, strict=True):
        site = plan.initial.get(j)
        name = f"carry:{j}"
        if site is None:
            means.append(axes.to_chain(jnp.asarray(init[j], dtype), name))
            roots.append(jnp.zeros((axes.batch, size, size), dtype))
            continue
        parts = gaussian_parts(site.fn)
        shape = jnp.shape(init[j])
        means.append(axes.to_chain(jnp.broadcast_to(parts.loc, shape).astype(dtype), name))
        if parts.kind == "diag":
            root = axes.to_chain(jnp.broadcast_to(parts.root, shape).astype(dtype), name)
        else:
            full = jnp.broadcast_to(parts.root, (*shape, shape[-1])).astype(dtype)
            root = axes.to_chain(full, name, 2)
        roots.append(_block_root(root[None], parts.kind)[0])
    rest = lay.size - sum(lay.carry_sizes)
    means.append(jnp.zeros((axes.batch, rest), dtype))
    roots.append(jnp.zeros((axes.batch, rest, rest), dtype))
    mean = jnp.concatenate(means, axis=-1)
    root = _block_diag([r[None] for r in roots])[0]
    return mean, root


def kalman_inputs(
    plan: ChainPlan,
    axes: ChainAxes,
    lay: Layout,
    pieces: Pieces,
    init: list[Any],
    length: int,
    dtype: Any,
) -> KalmanInputs:
    """The kernels' arguments (see the module docstring); batch axis ``B`` first."""
    p = pieces.arrays
    chain_names = [s.name for s in plan.chain]
    emission_names = [s.name for s in plan.emissions]
    carries = [f"carry:{j}" for j in plan.latent_carry]
    n_c, n_z = sum(lay.carry_sizes), sum(lay.site_sizes)
    batch = axes.batch

    def zeros(rows: int, cols: int) -> Array:
        return jnp.zeros((1, batch, rows, cols), dtype)

    if chain_names:
        jac_z = _cat([p[f"jac:site:{n}"] for n in chain_names], -2)
        b = _cat([p[f"off:site:{n}"] for n in chain_names], -1)
        roots = [_block_root(p[f"root:{s.name}"], s.gaussian or "diag") for s in plan.chain]
        l_z = roots[0] if len(roots) == 1 else _block_diag(roots)
        a_c, a_z = jac_z[..., :n_c], jac_z[..., n_c:]
        # Solved one right-hand side at a time (the solve is linear in it): a concatenation
        # would tie the matrices' gradient to the noise's, and the Kalman kernels' backward
        # pass is several times slower when the transition matrix needs a cotangent.
        big_p, small_p, big_r = a_c, b, l_z
        if _chained_sites(plan):
            lhs = jnp.eye(n_z, dtype=dtype) - a_z
            big_p, small_p, big_r = (
                _unit_lower_solve(lhs, rhs) for rhs in (a_c, b[..., None], l_z)
            )
            small_p = small_p[..., 0]
    else:
        big_p, small_p, big_r = zeros(0, n_c), jnp.zeros((1, batch, 0), dtype), zeros(0, 0)

    if carries:
        jac_c = _cat([p[f"jac:{n}"] for n in carries], -2)
        h = _cat([p[f"off:{n}"] for n in carries], -1)
        g_c, g_z = jac_c[..., :n_c], jac_c[..., n_c:]
        f_c = g_c + g_z @ big_p if n_z else g_c
        c_c = h + (g_z @ small_p[..., None])[..., 0] if n_z else h
        s_c = g_z @ big_r if n_z else zeros(n_c, 0)
    else:
        f_c, c_c, s_c = zeros(0, 0), jnp.zeros((1, batch, 0), dtype), zeros(0, n_z)

    extra, c_obs = lay.extra, lay.c_obs
    rows_f = [f_c, big_p[..., extra, :], _onehot(c_obs, n_c, dtype)[None, None]]
    rows_c = [c_c, small_p[..., extra], jnp.zeros((1, batch, len(c_obs)), dtype)]
    rows_s = [s_c, big_r[..., extra, :], zeros(len(c_obs), n_z)]
    f_x = _cat([jnp.broadcast_to(r, (r.shape[0], batch, *r.shape[2:])) for r in rows_f], -2)
    f_x = jnp.concatenate([f_x, jnp.zeros((*f_x.shape[:-1], lay.size - n_c), dtype)], axis=-1)
    c_x = _cat(rows_c, -1)
    s_x = _square(_cat(rows_s, -2), lay.size)

    if emission_names:
        jac_y = _cat([p[f"jac:site:{n}"] for n in emission_names], -2)
        d = _cat([p[f"off:site:{n}"] for n in emission_names], -1)
        c_c_y, c_z_y = jac_y[..., :n_c], jac_y[..., n_c:]
        h_x = c_z_y @ _onehot(lay.z_index, lay.size, dtype) if n_z else 0.0
        h_x = h_x + c_c_y @ _onehot(lay.c_index, lay.size, dtype)
        u = _block_diag(
            [_block_root(p[f"root:{s.name}"], s.gaussian or "diag") for s in plan.emissions]
        )
        y = _cat([p[f"value:{n}"] for n in emission_names], -1)
        masks = []
        for s in plan.emissions:
            k = p[f"value:{s.name}"].shape[-1]
            m = p.get(f"mask:{s.name}")
            if m is None:
                masks.append(jnp.ones((1, batch, k), dtype))
            else:
                m = m.astype(dtype)
                if s.gaussian == "tril":
                    d_s = plan.emission_shapes[s.name][-1]
                    m = jnp.repeat(m, d_s, axis=-1)
                masks.append(m)
        mask = _cat(masks, -1)
    else:
        h_x = zeros(0, lay.size)
        d = jnp.zeros((1, batch, 0), dtype)
        u = zeros(0, 0)
        y = jnp.zeros((1, batch, 0), dtype)
        mask = jnp.ones((1, batch, 0), dtype)
    h_x = jnp.broadcast_to(h_x, (h_x.shape[0], batch, *h_x.shape[2:]))
    masked = 1.0 - mask
    h_x = h_x * mask[..., None]
    d = d * mask
    y = jnp.where(mask > 0, jnp.broadcast_to(y, (length, *y.shape[1:])), 0.0)
    k = y.shape[-1]
    u = u * mask[..., :, None] * mask[..., None, :] + masked[..., None] * jnp.eye(k, dtype=dtype)
    correction = 0.5 * LOG_2PI * jnp.sum(jnp.broadcast_to(masked, (length, batch, k)), axis=(0, 2))

    mean0, root0 = _initial(plan, axes, lay, init, dtype)

    def batch_first(a: Array) -> Array:
        a = jnp.broadcast_to(a, (a.shape[0], batch, *a.shape[2:]))
        return jnp.moveaxis(a, 0, 1)

    return KalmanInputs(
        mean0,
        root0,
        AffineGaussian(batch_first(f_x), batch_first(c_x), batch_first(s_x)),
        AffineGaussian(batch_first(h_x), batch_first(d), batch_first(u)),
        batch_first(y),
        correction,
    )


def _unit_lower_solve(lhs: Array, rhs: Array) -> Array:
    """``lhs⁻¹ rhs`` for unit lower-triangular ``lhs``, both with leading ``(time, B)`` axes."""
    steps = max(lhs.shape[0], rhs.shape[0])
    lhs = jnp.broadcast_to(lhs, (steps, *lhs.shape[1:]))
    rhs = jnp.broadcast_to(rhs, (steps, *rhs.shape[1:]))
    return jsl.solve_triangular(lhs, rhs, lower=True, unit_diagonal=True)


def _chained_sites(plan: ChainPlan) -> bool:
    """Whether a chain site's mean reads another chain site of the same step."""
    n_c = plan.traced.n_carry
    bits = 0
    for p in plan.chain_inputs:
        bits |= 1 << p
    for s in plan.chain:
        for i in s.outputs.get("loc", ()):
            if plan.deps[n_c + i] & bits:
                return True
    return False
