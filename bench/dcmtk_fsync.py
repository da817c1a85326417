"""DCMTK storescp made to fsync each file before it answers: the floor of any receiver
that keeps the gateway's promise (acknowledged = on disk), in native code.

storescp never syncs, so DCMTK's passthrough, the yardstick of every ratio in `make bench`,
measures a receiver that may lose what it acknowledged. Run under `fsync_on_close.c`
(compiled here with the machine's C compiler, LD_PRELOAD), storescp fsyncs every file it
wrote when it closes it, which it does before sending the C-STORE response. Its rate
against the plain passthrough is what the promise alone costs on this disk; the gateway's
receive ratio can approach it but not pass it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import e2e

__all__ = ["dcmtk_fsync_seconds", "fsync_shim"]

_SOURCE = Path(__file__).with_name("fsync_on_close.c")


def fsync_shim(folder: Path) -> Path | None:
    """The shim compiled into `folder`; None without a C compiler (the row is left out)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    library = folder / "fsync_on_close.so"
    command = [compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(_SOURCE), "-ldl"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        print(f"fsync shim not built: {result.stderr.strip()[-500:]}", flush=True)
        return None
    return library


def dcmtk_fsync_seconds(root: Path, load: e2e.Workload) -> float | None:
    """storescu -> storescp fsyncing every file, better of two runs; None without the shim."""
    with tempfile.TemporaryDirectory() as build:
        shim = fsync_shim(Path(build))
        if shim is None:
            return None
        runs = [
            e2e.passthrough(root / f"dcmtk_fsync{i}", load, {"LD_PRELOAD": str(shim)})
            for i in range(2)
        ]
    return min(run.seconds for run in runs)
