"""Run a compiled loop in equal chunks, with a tqdm progress bar between chunks.

The loop body is compiled once for a chunk length, so a progress bar costs no host
callback inside the compiled code and a second run with the same settings compiles
nothing. When the number of steps is not a multiple of the chunk length, the last chunk
is padded with skipped steps (``lax.cond`` on an unbatched flag).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

__all__ = ["ChunkPlan", "chunk_plan", "progress"]

NUM_CHUNKS = 20


class ChunkPlan(NamedTuple):
    """``num_chunks`` chunks of ``length`` steps; ``padded``: the last one has skipped
    steps (the total is over ``num_steps``)."""

    length: int
    num_chunks: int
    padded: bool


def chunk_plan(num_steps: int, progress_bar: bool) -> ChunkPlan:
    """How to split ``num_steps`` steps: one chunk without a progress bar, else about 20.

    Example:
        >>> chunk_plan(300, progress_bar=True)
        ChunkPlan(length=15, num_chunks=20, padded=False)
        >>> chunk_plan(301, progress_bar=True)
        ChunkPlan(length=16, num_chunks=19, padded=True)
        >>> chunk_plan(301, progress_bar=False)
        ChunkPlan(length=301, num_chunks=1, padded=False)
    """
    if num_steps <= 0:
        return ChunkPlan(0, 0, False)
    if not progress_bar:
        return ChunkPlan(num_steps, 1, False)
    length = math.ceil(num_steps / NUM_CHUNKS)
    num_chunks = math.ceil(num_steps / length)
    return ChunkPlan(length, num_chunks, length * num_chunks != num_steps)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_description(self, desc: str) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass


@contextmanager
def progress(total: int, desc: str, enabled: bool) -> Iterator[Any]:
    """A tqdm bar (or a silent stand-in when ``enabled`` is false)."""
    if not enabled or total <= 0:
        yield _NoBar()
        return
    from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]

    bar = tqdm(total=total, desc=desc, leave=True, dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()
