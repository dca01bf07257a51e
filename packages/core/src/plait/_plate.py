"""``plate`` and ``plate_stack``: conditionally independent batch dimensions."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array, lax, random

from plait._message import Message, PlateFrame
from plait._messenger import ControlFlowStep, Messenger
from plait._runtime import apply_stack
from plait.errors import SiteAssertionError, SiteError

__all__ = ["plate", "plate_batch_shape", "plate_stack"]


def plate_batch_shape(frames: Sequence[PlateFrame], dist_batch: tuple[int, ...]) -> tuple[int, ...]:
    """The batch shape a site with distribution batch shape ``dist_batch`` (sample shape
    included) gets inside the plates ``frames``.

    Plate dims to the left of the distribution's batch are prepended; overlapping dims
    broadcast; dims of the distribution left of every plate are kept.

    Raises:
        ValueError: ``dist_batch`` does not broadcast with the plates.

    Example:
        >>> from plait import PlateFrame, plate_batch_shape
        >>> plate_batch_shape([PlateFrame("a", -1, 3), PlateFrame("b", -3, 2)], (4, 1))
        (2, 4, 3)
    """
    if not frames:
        return dist_batch
    expected = [1] * max(-f.dim for f in frames)
    for f in frames:
        expected[f.dim] = f.size
    overlap = max(len(expected) - len(dist_batch), 0)
    trailing = lax.broadcast_shapes(tuple(expected[overlap:]), dist_batch)
    return tuple(expected[:overlap]) + tuple(trailing)


def _subsample_indices(size: int, subsample_size: int, rng_key: Array | None = None) -> Array:
    """``subsample_size`` distinct indices in ``[0, size)``, drawn as NumPyro draws them."""
    if rng_key is None:
        raise SiteError(
            None,
            "a subsampling plate needs a random key to draw its indices: run the model under "
            "plait.handlers.seed, or substitute the indices. MCMC (NUTS/HMC) does not support "
            "subsampling; use SVI.",
        )
    if jax.default_backend() == "cpu":
        keys = random.split(rng_key, subsample_size)

        def swap(indices: Array, step: Array) -> tuple[Array, None]:
            last = size - step - 1
            other = random.randint(keys[step], (), 0, last + 1)
            pair = jnp.array([last, other])
            return indices.at[pair].set(indices[pair[::-1]]), None

        shuffled, _ = lax.scan(swap, jnp.arange(size), jnp.arange(subsample_size))
        return shuffled[-subsample_size:]
    return random.choice(rng_key, size, (subsample_size,), replace=False)


class plate(Messenger[..., Any]):
    """Declare ``size`` conditionally independent copies along a batch dimension.

    Sites inside are broadcast to the plate's size on dim ``dim`` (the rightmost free
    negative dim by default). With ``subsample_size`` the plate draws random indices
    (``with plate(...) as idx``) and scales log densities by ``size / subsample_size``.

    Args:
        name: the plate name.
        size: the full size.
        subsample_size: the minibatch size, or ``None`` for no subsampling.
        dim: an explicit negative batch dim.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import plate, sample
        >>> from plait.handlers import seed
        >>> with seed(rng_seed=0), plate("data", 5):
        ...     x = sample("x", dist.Normal(0.0, 1.0))
        >>> x.shape
        (5,)
    """

    def __init__(
        self,
        name: str,
        size: int,
        subsample_size: int | None = None,
        dim: int | None = None,
    ) -> None:
        if not isinstance(size, int) or size <= 0:
            raise SiteAssertionError(
                name, f"plate '{name}' needs a positive integer size, got {size!r}."
            )
        if dim is not None and dim >= 0:
            raise SiteError(
                name,
                f"plate '{name}' got dim={dim}; plate dims count from the "
                "right and must be negative (-1 is the rightmost).",
            )
        if subsample_size is not None and not 0 < subsample_size <= size:
            raise SiteError(
                name,
                f"plate '{name}' has subsample_size={subsample_size}, which must be between 1 "
                f"and the plate's size {size}.",
            )
        self.name = name
        self.size = size
        self.dim, self.indices = self._allocate(name, size, subsample_size, dim)
        self.subsample_size = int(self.indices.shape[0])
        super().__init__()

    @staticmethod
    def _allocate(
        name: str, size: int, subsample_size: int | None, dim: int | None
    ) -> tuple[int, Array]:
        subsampling = subsample_size is not None and subsample_size != size
        msg = Message(
            type="plate",
            name=name,
            fn=_subsample_indices,
            args=(size, subsample_size),
            kwargs={"rng_key": None},
            value=None if subsampling else jnp.arange(size),
            scale=1.0,
        )
        apply_stack(msg)
        occupied = {f.dim: f.name for f in msg.cond_indep_stack}
        if dim is None:
            dim = -1
            while dim in occupied:
                dim -= 1
        elif dim in occupied:
            raise SiteAssertionError(
                name,
                f"plate '{name}' asks for dim {dim}, which the enclosing plate "
                f"'{occupied[dim]}' already uses; give '{name}' another dim or leave dim=None.",
            )
        return dim, jnp.asarray(msg.value)

    def __enter__(self) -> Array:
        super().__enter__()
        return self.indices

    def _frame(self, msg: Message) -> bool:
        """Append this plate's frame to ``msg``; False when the site blocks this plate."""
        blocked = msg.infer.get("block_plates")
        if blocked and self.name in blocked:
            return False
        msg.cond_indep_stack.append(PlateFrame(self.name, self.dim, self.subsample_size))
        return True

    def _scale(self, msg: Message) -> None:
        if self.size != self.subsample_size:
            ratio = self.size / self.subsample_size
            msg.scale = ratio if msg.scale is None else msg.scale * ratio

    def process_sample(self, msg: Message) -> None:
        if not self._frame(msg):
            return
        fn = msg.fn
        dist_batch = tuple(msg.kwargs.get("sample_shape", ())) + tuple(fn.batch_shape)
        if "sample_shape" in msg.kwargs:
            msg.kwargs["sample_shape"] = ()
        try:
            batch_shape = plate_batch_shape(msg.cond_indep_stack, dist_batch)
        except ValueError:
            expected = plate_batch_shape(msg.cond_indep_stack, ())
            raise SiteError(
                msg.name,
                f"site '{msg.name}' inside plate '{self.name}' (size {self.subsample_size}, "
                f"dim {self.dim}) has batch shape {dist_batch}; expected a shape broadcastable "
                f"to {expected}. Give '{msg.name}' a batch shape that broadcasts with "
                "the plates (size 1 or the plate size on each plate dim), or move it out of "
                "the plate.",
            ) from None
        if batch_shape != tuple(fn.batch_shape):
            msg.fn = fn.expand(batch_shape)
        self._scale(msg)

    def process_param(self, msg: Message) -> None:
        if self._frame(msg):
            self._scale(msg)

    def process_plate(self, msg: Message) -> None:
        if self._frame(msg):
            self._scale(msg)

    def process_deterministic(self, msg: Message) -> None:
        self._frame(msg)

    def process_control_flow(self, msg: Message) -> None:
        # Control-flow plugins read the frames to vectorise their body over the plates.
        self._frame(msg)

    def for_control_flow(self, step: ControlFlowStep) -> plate:
        """Inside a loop body the plate acts on every step's sites as it would on the
        unrolled loop: the same frame, expansion and subsampling scale (its indices were
        drawn once, outside)."""
        return copy.copy(self)

    def _take_subsample(self, msg: Message, what: str) -> None:
        event_dim = msg.kwargs.get("event_dim")
        if event_dim is None:
            return
        dim = self.dim - event_dim
        shape = jnp.shape(msg.value)
        if len(shape) >= -dim and shape[dim] != 1:
            if shape[dim] != self.size:
                raise SiteError(
                    msg.name,
                    f"inside plate '{self.name}' (size {self.size}, dim {self.dim}), {what} "
                    f"with event_dim={event_dim} has shape {shape}: dim {dim} must have size "
                    f"{self.size} (or 1).",
                )
            if self.subsample_size < self.size:
                msg.value = jnp.take(msg.value, self.indices, dim)

    def postprocess_param(self, msg: Message) -> None:
        self._take_subsample(msg, f"param '{msg.name}'")

    def postprocess_subsample(self, msg: Message) -> None:
        self._take_subsample(msg, "subsample(...)")


@contextmanager
def plate_stack(prefix: str, sizes: Sequence[int], rightmost_dim: int = -1) -> Iterator[None]:
    """Enter one plate per size, on contiguous dims ending at ``rightmost_dim``.

    Plates are named ``f"{prefix}_{i}"``, ``i = 0`` the rightmost, with ``sizes`` read
    from the right.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import plate_stack, sample
        >>> from plait.handlers import seed
        >>> with seed(rng_seed=0), plate_stack("grid", [2, 3]):
        ...     x = sample("x", dist.Normal(0.0, 1.0))
        >>> x.shape
        (2, 3)
    """
    if rightmost_dim >= 0:
        raise SiteAssertionError(
            prefix,
            f"plate_stack '{prefix}' got rightmost_dim={rightmost_dim}; it must be negative.",
        )
    with ExitStack() as stack:
        for i, size in enumerate(reversed(list(sizes))):
            stack.enter_context(plate(f"{prefix}_{i}", size, dim=rightmost_dim - i))
        yield
