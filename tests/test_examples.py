"""Smoke tests: every script in ``examples/`` runs end to end at a small size.

Each script runs in this process with the arguments below (sizes small enough for CI),
either as ``__main__`` parsing ``sys.argv`` exactly as from the command line, or through
its ``main(argv)``, which returns the numbers it printed. A script whose plugins are not
installed is skipped, naming them; so is one that is not in the checkout.
"""

from __future__ import annotations

import math
import runpy
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

pytestmark = pytest.mark.slow  # the examples (deselect with -m "not slow")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class Example(NamedTuple):
    script: str
    argv: tuple[str, ...]
    requires: tuple[str, ...]


CASES = [
    Example("regression.py", ("--n", "50", "--d", "2"), ("plait.handlers",)),
    Example(
        "bnn.py",
        ("--n", "20", "--hidden", "4", "--warmup", "30", "--samples", "30"),
        ("plait.nn", "plait.infer"),
    ),
    Example(
        "state_space.py",
        ("--length", "15", "--horizon", "2", "--warmup", "30", "--samples", "30"),
        ("plait.control_flow", "plait.infer"),
    ),
    Example(
        "gaussian_mixture.py",
        ("--n", "40", "--k", "2", "--warmup", "30", "--samples", "30"),
        ("plait.enum", "plait.infer"),
    ),
    Example(
        "hmm.py",
        ("--num-steps", "20", "--num-warmup", "20", "--num-samples", "20", "--out", "hmm.png"),
        ("plait.infer", "matplotlib"),  # without plait-enum it falls back to a factor
    ),
    Example(
        "gaussian_hmm_collapsed.py",
        ("--length", "15", "--warmup", "40", "--samples", "40"),
        ("plait.gaussian", "plait.infer"),
    ),
]
RETURN_SUMMARIES = (
    "bnn.py",
    "state_space.py",
    "gaussian_mixture.py",
    "hmm.py",
    "gaussian_hmm_collapsed.py",
)


@pytest.mark.parametrize("case", CASES, ids=[case.script for case in CASES])
def test_example_runs(
    case: Example,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    path = EXAMPLES / case.script
    if not path.exists():
        pytest.skip(f"examples/{case.script} is not in this checkout")
    for module in case.requires:
        pytest.importorskip(
            module, reason=f"examples/{case.script} needs {module}", exc_type=ModuleNotFoundError
        )
    monkeypatch.chdir(tmp_path)  # whatever a script writes (hmm.py's plot) lands here
    monkeypatch.setattr(sys, "argv", [str(path), *case.argv])
    monkeypatch.syspath_prepend(str(EXAMPLES))
    if case.script in RETURN_SUMMARIES:
        # main(argv) returns the numbers it printed: they must be finite.
        namespace = runpy.run_path(str(path), run_name=f"example_{path.stem}")
        summary = namespace["main"](list(case.argv))
        assert summary and all(math.isfinite(v) for v in summary.values()), summary
    else:
        runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out.strip(), f"examples/{case.script} printed nothing"
