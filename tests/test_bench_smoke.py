"""`make bench` still runs: bench/run.py end to end on a tiny workload, figures not judged.

The benchmark is run by hand, so nothing else would notice that a change in the service,
the harness or the engine broke it. Timings are never asserted (they depend on the machine
and on what else runs); only that every row of the table is printed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "run.py"

pytestmark = pytest.mark.skipif(
    shutil.which("storescu") is None or shutil.which("storescp") is None,
    reason="DCMTK storescu/storescp not installed",
)


def test_bench_prints_the_whole_table_for_a_tiny_workload() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            *("--ct", "3", "--ct-size", "32", "--tiny", "0", "--quiet", "0.2"),
            *("--engine-sample", "3", "--ocr-frames", "1", "--ocr-kinds", "ct"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for row in (
        "machine: ",
        "DCMTK storescu -> storescp",
        "DCMTK storescp fsyncing each file",
        "gateway receive",
        "gateway end to end -> DCMTK storescp",
        "gateway end to end -> folder",
        "engine: de-identify + verify, per core",
        "peak RSS, service + workers summed",
        "ct 3 x 32x32: receive",
    ):
        assert row in out, out
    if shutil.which("cc") is not None:  # the shim was built and storescp ran under it
        assert "DCMTK's storescp fsyncing each file: " in out, out
    if shutil.which("tesseract") is not None:
        assert "OCR frames/s per core (CT-like 512x512)" in out, out
