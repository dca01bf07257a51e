"""The per-site data plait-enum keeps in ``msg.stash`` (typed keys, one place)."""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from plait import StashKey
from plait.enum._record import ScanRecord

__all__ = ["DIM_NAMES", "ENUM_DIM", "ENUM_SUPPORT", "SCAN_RECORD", "SCAN_SITE", "ScanSite"]


class ScanSite(NamedTuple):
    """Where a site an enumerated scan sent comes from.

    Fields:
        record: the scan's record.
        body_name: the site's name in the body.
        step: the logical step of an unrolled (``_PREV_``) site; -1 for stacked ones.
    """

    record: ScanRecord
    body_name: str
    step: int


ENUM_DIM: Final[StashKey[int]] = StashKey()
"""The dim that holds an enumerated site's support (its value is the support there)."""

ENUM_SUPPORT: Final[StashKey[Any]] = StashKey()
"""The support array ``enum`` set as an enumerated site's value: while ``msg.value`` is
this very object, the value is known to be the whole support along ``ENUM_DIM``."""

DIM_NAMES: Final[StashKey[dict[int, str]]] = StashKey()
"""For every sample site seen under ``enum``: the enumerated variables visible there,
dim to name. A dim of the site's log-density of size > 1 is one of these, or a plate."""

SCAN_RECORD: Final[StashKey[ScanRecord]] = StashKey()
"""On the stacked sample sites an enumerated scan sends after its loop: the scan's record.
Such sites are summed out through the record (a chain), not one by one."""

SCAN_SITE: Final[StashKey[ScanSite]] = StashKey()
"""On every site an enumerated scan sends: where it comes from."""
