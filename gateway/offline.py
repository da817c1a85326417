"""Offline mode: the same engine and verify gate over a folder of files.

`anonymize_folder` walks the input recursively, processes files in a process pool, and
writes `OUTPUT/<pseudo patient>/<pseudo study>/<pseudo series>/<sop>.dcm`. What fails goes
to the quarantine under the storage folder, never into OUTPUT, which holds only clean files.
Files that are not DICOM (or DICOMDIRs) are reported and skipped; the run goes on.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from gateway.deid.engine import DeidResult
from gateway.layout import export_path
from gateway.pipeline import EngineSettings, FileOutcome, deidentify_file, init_worker

log = logging.getLogger(__name__)

__all__ = ["EngineSettings", "Summary", "anonymize_folder"]


@dataclass
class Summary:
    files_in: int = 0
    written: int = 0
    quarantined: int = 0
    skipped: int = 0
    seconds: float = 0.0
    problems: list[FileOutcome] = field(default_factory=list)

    def add(self, outcome: FileOutcome) -> None:
        self.files_in += 1
        if outcome.status == "written":
            self.written += 1
            return
        if outcome.status == "quarantined":
            self.quarantined += 1
        else:
            self.skipped += 1
        self.problems.append(outcome)

    def line(self) -> str:
        return (
            f"files in: {self.files_in}, written: {self.written}, "
            f"quarantined: {self.quarantined}, skipped: {self.skipped}, "
            f"seconds: {self.seconds:.2f}"
        )


def input_files(input_dir: Path, exclude: Path | None = None) -> Iterator[Path]:
    """Every regular file under `input_dir`, in a stable order, except under `exclude`."""
    exclude_resolved = exclude.resolve() if exclude is not None else None
    for folder, dirs, files in os.walk(input_dir):
        here = Path(folder)
        if exclude_resolved is not None:
            dirs[:] = [d for d in dirs if (here / d).resolve() != exclude_resolved]
        dirs.sort()
        for name in sorted(files):
            path = here / name
            if path.is_file() and not path.is_symlink():
                yield path


def _output_target(output_dir: Path, result: DeidResult) -> Path:
    return export_path(
        output_dir,
        result.patient_pseudonym,
        result.study_uid or "NO-STUDY",
        result.series_uid or "NO-SERIES",
        result.sop_instance_uid,
    )


def process_file(path: Path, output_dir: Path) -> FileOutcome:
    """One input file into the output tree (in a worker process)."""
    return deidentify_file(path, functools.partial(_output_target, output_dir), "offline")


def anonymize_folder(
    input_dir: Path, output_dir: Path, settings: EngineSettings, workers: int = 1
) -> Summary:
    """De-identify every file under `input_dir` into `output_dir`."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise NotADirectoryError(f"input folder not found: {input_dir}")
    if output_dir.resolve() == input_dir.resolve():
        raise ValueError("the output folder must not be the input folder")
    storage = settings.storage_dir.resolve()
    out = output_dir.resolve()
    if storage == out or storage.is_relative_to(out):
        raise ValueError("the storage folder (quarantine) must not be inside the output folder")
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    summary = Summary()
    files = list(input_files(input_dir, exclude=output_dir))
    if workers <= 1:
        init_worker(settings)
        for path in files:
            summary.add(process_file(path, output_dir))
    else:
        with ProcessPoolExecutor(
            max_workers=workers, initializer=init_worker, initargs=(settings,)
        ) as pool:
            chunk = max(1, min(32, len(files) // (workers * 4) or 1))
            outdirs = [output_dir] * len(files)
            for outcome in pool.map(process_file, files, outdirs, chunksize=chunk):
                summary.add(outcome)
    summary.seconds = time.monotonic() - started
    return summary
