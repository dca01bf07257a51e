"""``python -m plait``: the installed plait packages, their versions and what they provide."""

from __future__ import annotations

import sys
import textwrap

import plait


def main() -> int:
    """Print one block per plugin; failed plugins are listed with their error.

    Example:
        >>> main()  # doctest: +ELLIPSIS
        plait ... (plait-core)
        ...
        0
    """
    print(f"plait {plait.__version__} (plait-core)")
    for info in plait.plugins():
        origin = f" ({info.distribution})" if info.distribution else ""
        print(f"\n  {info.name} {info.version}{origin}")
        text = ", ".join(info.provides) or "-"
        print(textwrap.indent(textwrap.fill(text, width=76), "    "))
    for name, error in plait.failed_plugins().items():
        print(f"\n  {name}: failed to load: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
