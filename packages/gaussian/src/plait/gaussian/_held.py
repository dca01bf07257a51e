"""Initial sites held back by ``collapse``: the Gaussian latents a chain starts from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plait import InferDict, PlateFrame

__all__ = ["HeldSite"]


@dataclass(eq=False)
class HeldSite:
    """A latent Gaussian site outside every loop that ``collapse`` kept from the handlers
    outside it, because a collapsed chain starts from it (the seed's ``x_0``).

    Its ``value`` is a placeholder (zeros): the chain reads the site's distribution, never
    the value; ``scan`` recognises it as a carry's initial value by identity.
    """

    name: str
    value: Any
    fn: Any
    frames: tuple[PlateFrame, ...]
    scale: Any
    infer: InferDict
    consumed_by: str | None = None
