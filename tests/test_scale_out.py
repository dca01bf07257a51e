"""Two processes on the loopback address (``jax.distributed``, CPU collectives over gloo)
draw what one process with as many devices draws.

Each test runs ``examples/scale_out.py``, the multi-host recipe of ``docs/scale-out.md``:
twice as two processes with 2 CPU devices each, once as one process with 4, in float64
(so the comparison can be tight), each bounded by a timeout.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "scale_out.py"
TIMEOUT = 600  # seconds, for all processes of one run together
SMALL = ["--n", "64", "--warmup", "10", "--samples", "10"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def launch(argv: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "JAX_ENABLE_X64": "1"}
    env.pop("XLA_FLAGS", None)
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(processes: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    """Each process's summary; all are killed if any fails or the time runs out."""
    results = []
    try:
        for p in processes:
            out, err = p.communicate(timeout=TIMEOUT)
            assert p.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return results


def run_both(split: str, chains: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    common = ["--split", split, "--chains", str(chains), *SMALL]
    address = f"127.0.0.1:{free_port()}"
    pair = [
        launch(
            [
                *common,
                "--cpu-devices=2",
                f"--coordinator={address}",
                "--num-processes=2",
                f"--process-id={i}",
            ]
        )
        for i in range(2)
    ]
    single = launch([*common, "--cpu-devices=4"])
    results = finish([*pair, single])
    return results[:2], results[2]


def assert_same_draws(a: dict[str, Any], b: dict[str, Any], rtol: float) -> None:
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_allclose(np.asarray(a[name]), np.asarray(b[name]), rtol=rtol, atol=rtol)


@pytest.mark.slow
def test_chains_over_two_processes_draw_what_one_process_draws() -> None:
    pair, single = run_both("chains", chains=4)
    assert [r["process"] for r in pair] == [0, 1]
    assert all(r["processes"] == 2 and r["devices"] == 4 for r in pair)
    assert single["processes"] == 1 and single["devices"] == 4
    assert np.shape(pair[0]["draws"]["w"]) == (4, 10, 3)
    for result in pair:  # every process ends with every chain
        assert_same_draws(result["draws"], single["draws"], rtol=1e-10)


@pytest.mark.slow
def test_data_plate_split_over_two_processes_draws_what_one_process_draws() -> None:
    # Each process holds 32 of the 64 rows; the log density's sum is an all-reduce across
    # processes, in another order than in one process: rounding differs at ~1e-16.
    pair, single = run_both("data", chains=2)
    assert all(r["processes"] == 2 and r["devices"] == 4 for r in pair)
    for result in pair:
        assert_same_draws(result["draws"], single["draws"], rtol=1e-8)
