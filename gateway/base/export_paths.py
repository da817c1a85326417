"""Where clean instances go on disk: one tree for offline output and the folder destination.

A leaf module, so the offline command and net/folder share the layout without importing
each other.
"""

from __future__ import annotations

from pathlib import Path


def export_path(root: Path, patient: str, study: str, series: str, sop: str) -> Path:
    """`root/<pseudo patient ID>/<pseudo Study UID>/<pseudo Series UID>/<pseudo SOP UID>.dcm`."""
    return root / patient / study / series / f"{sop}.dcm"
