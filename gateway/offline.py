"""Offline mode: the same engine and verify gate over a folder of files.

`anonymize_folder` walks the input recursively, processes files in a process pool, and
writes `OUTPUT/<pseudo patient>/<pseudo study>/<pseudo series>/<sop>.dcm`. What fails goes
to the quarantine under the storage folder, never into OUTPUT, which holds only clean files.
Files that are not DICOM (or DICOMDIRs) are reported and skipped; the run goes on.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.filewriter import dcmwrite

from gateway import quarantine
from gateway.deid.engine import Engine
from gateway.deid.profile import CompiledProfile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.pipeline import Quarantine, configure_pydicom, process_instance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSettings:
    """What a worker process needs to build its engine (picklable)."""

    profile: CompiledProfile
    secret: bytes = field(repr=False)
    site_id: str
    storage_dir: Path


@dataclass(frozen=True)
class FileOutcome:
    status: str  # "written" | "quarantined" | "skipped"
    source: Path
    detail: str = ""
    output: Path | None = None


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


def output_path(output_dir: Path, patient: str, study: str, series: str, sop: str) -> Path:
    return output_dir / patient / study / series / f"{sop}.dcm"


_worker_engine: Engine | None = None
_worker_settings: EngineSettings | None = None


def _init_worker(settings: EngineSettings) -> None:
    global _worker_engine, _worker_settings
    configure_pydicom()
    _worker_settings = settings
    _worker_engine = Engine(settings.profile, Pseudonyms(settings.secret, settings.site_id))


def _read(path: Path):  # -> Dataset | Quarantine | str (why it is not DICOM)
    if path.name.upper() == "DICOMDIR":
        return "DICOMDIR (a media directory, not an instance)"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = dcmread(path)
        if any("End of file reached" in str(w.message) for w in caught):
            # An undefined-length item or sequence ran off the end: the file is cut short.
            return Quarantine("truncated", "read", "file ends before its last element")
        return ds
    except InvalidDicomError:
        pass
    except Exception as exc:
        return f"cannot read as DICOM ({type(exc).__name__})"
    # No preamble: accept it only if it parses as a dataset that is an instance.
    try:
        ds = dcmread(path, force=True)
        if ds.get("SOPClassUID") and ds.get("SOPInstanceUID"):
            return ds
    except Exception as exc:
        return f"cannot read as DICOM ({type(exc).__name__})"
    return "not a DICOM file"


def process_file(path: Path, output_dir: Path) -> FileOutcome:
    """Read, de-identify, verify and write one file; runs inside a worker process."""
    assert _worker_engine is not None and _worker_settings is not None
    read = _read(path)
    if isinstance(read, str):
        return FileOutcome("skipped", path, read)
    outcome = read if isinstance(read, Quarantine) else process_instance(read, _worker_engine)
    if isinstance(outcome, Quarantine):
        entry = quarantine.put(
            _worker_settings.storage_dir,
            path,
            reason=outcome.reason,
            stage=outcome.stage,
            message=outcome.message,
            origin="offline",
        )
        return FileOutcome("quarantined", path, f"{outcome.reason}: {entry.id}")
    result = outcome.result
    target = output_path(
        output_dir,
        result.patient_pseudonym,
        result.study_uid or "NO-STUDY",
        result.series_uid or "NO-SERIES",
        result.sop_instance_uid,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".tmp-{secrets.token_hex(6)}"
    try:
        dcmwrite(temporary, outcome.dataset, enforce_file_format=True)
        os.replace(temporary, target)
    except Exception as exc:
        temporary.unlink(missing_ok=True)
        entry = quarantine.put(
            _worker_settings.storage_dir,
            path,
            reason="write-failed",
            stage="write",
            message=f"cannot encode the de-identified instance ({type(exc).__name__})",
            origin="offline",
        )
        return FileOutcome("quarantined", path, f"write-failed: {entry.id}")
    return FileOutcome("written", path, output=target)


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
        _init_worker(settings)
        for path in files:
            summary.add(process_file(path, output_dir))
    else:
        with ProcessPoolExecutor(
            max_workers=workers, initializer=_init_worker, initargs=(settings,)
        ) as pool:
            chunk = max(1, min(32, len(files) // (workers * 4) or 1))
            outdirs = [output_dir] * len(files)
            for outcome in pool.map(process_file, files, outdirs, chunksize=chunk):
                summary.add(outcome)
    summary.seconds = time.monotonic() - started
    return summary
