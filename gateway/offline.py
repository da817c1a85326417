"""Offline mode: the same engine and verify gate over a folder of files.

`anonymize_folder` walks the input recursively, processes files in a process pool, and
writes `OUTPUT/<pseudo patient>/<pseudo study>/<pseudo series>/<sop>.dcm`. What fails goes
to the quarantine under the storage folder, never into OUTPUT, which holds only clean files.
Files that are not DICOM (or DICOMDIRs) are reported and skipped; the run goes on.

Clinical tables (`*.csv`) in the input are pseudonymised with the same engine into
`OUTPUT/<their relative path>` (see `gateway.deid.clinical_csv`): the same patient gets the
same pseudonym and date shift in the table as in the images. A table that cannot be made
safe is reported and not written; it does not stop the images.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import secrets
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from gateway.base.export_paths import export_path
from gateway.deid.clinical_csv import CsvError, CsvReport, pseudonymise_csv
from gateway.deid.engine import DeidResult
from gateway.pipeline.files import (
    EngineSettings,
    FileOutcome,
    build_engine_and_mapping,
    deidentify_file,
    init_worker,
    remove_temporaries,
)
from gateway.stores import quarantine
from gateway.stores.mapping_records import InstanceOriginals
from gateway.stores.mapping_writer import MappingWriter
from gateway.stores.storage_dir import open_storage_dir

log = logging.getLogger(__name__)

__all__ = ["EngineSettings", "Summary", "anonymize_csv", "anonymize_folder"]

# Under the storage folder: one folder of output claims per running `anonymize`.
RUN_CLAIMS_DIR = "anonymize-claims"

# Where the files run instead of the local pool (gateway.offline_cluster.ClusterRunner):
# (files, output folder, claims folder, settings) -> each file's outcome as it finishes.
FileRunner = Callable[[list[Path], Path, Path, EngineSettings], Iterator[FileOutcome]]


@dataclass
class Summary:
    files_in: int = 0
    written: int = 0
    quarantined: int = 0
    skipped: int = 0
    dropped: int = 0  # by a rule of `routes:` (drop: true); not a problem
    duplicates: int = 0  # of the quarantined: a second input for an output already written
    seconds: float = 0.0
    problems: list[FileOutcome] = field(default_factory=list)
    csv_written: int = 0
    csv_failed: int = 0
    csv_rows_left_out: int = 0  # patients not in deid.pseudonym_table (quarantine)

    def add_csv(self, outcome: FileOutcome, left_out: int = 0) -> None:
        """A clinical table: counted apart from the DICOM files; a failure is a problem."""
        self.csv_rows_left_out += left_out
        if outcome.status == "written":
            self.csv_written += 1
        else:
            self.csv_failed += 1
            self.problems.append(outcome)

    def add(self, outcome: FileOutcome) -> None:
        self.files_in += 1
        if outcome.status == "written":
            self.written += 1
            return
        if outcome.status == "dropped":
            self.dropped += 1
            return
        if outcome.status == "quarantined":
            self.quarantined += 1
            self.duplicates += outcome.detail.startswith("duplicate:")
        else:
            self.skipped += 1
        self.problems.append(outcome)

    def line(self) -> str:
        return (
            (
                f"files in: {self.files_in}, written: {self.written}, "
                f"quarantined: {self.quarantined}, skipped: {self.skipped}, "
                + (f"duplicates: {self.duplicates}, " if self.duplicates else "")
                + (f"dropped by a rule: {self.dropped}, " if self.dropped else "")
                + f"seconds: {self.seconds:.2f}"
            )
            + (
                f", csv written: {self.csv_written}, csv failed: {self.csv_failed}"
                if self.csv_written or self.csv_failed
                else ""
            )
            + (
                f", csv rows left out (not in the pseudonym table): {self.csv_rows_left_out}"
                if self.csv_rows_left_out
                else ""
            )
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


def is_clinical_table(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


@dataclass(frozen=True)
class _TableIdentity:
    """A patient of a clinical table, as the mapping store records an instance's patient."""

    patient_pseudonym: str
    date_shift_days: int | None
    study_uid: str = ""
    series_uid: str = ""
    sop_instance_uid: str = ""


def record_table_patients(mapping: MappingWriter, report: CsvReport) -> None:
    """Seal each patient of a table (ID, issuer; date shift) like the DICOM path does, so
    `reidentify --csv` reverses the table; a record the images already made is kept."""
    entries = []
    for patient in report.patients:
        originals = InstanceOriginals(patient.patient_id, patient.issuer, "", "", "", "", "", "")
        identity = _TableIdentity(patient.identity.pseudonym, patient.identity.shift_days)
        entries += originals.entries(identity)
    mapping.record_many(entries)


def anonymize_csv(
    source: Path,
    target: Path,
    settings: EngineSettings,
    *,
    id_column: str | None = None,
    issuer: str = "",
) -> CsvReport:
    """One clinical table with the site's engine; the mapping is sealed before the output
    appears. Raises CsvError (the table), ValueError (arguments) or OSError (environment)."""
    open_storage_dir(settings.storage_dir)
    engine, mapping = build_engine_and_mapping(settings)
    try:
        return pseudonymise_csv(
            source,
            target,
            engine,
            settings.profile.csv,
            id_column=id_column,
            issuer=issuer,
            before_commit=(
                (lambda report: record_table_patients(mapping, report)) if mapping else None
            ),
        )
    finally:
        if mapping is not None:
            mapping.close()


def _anonymize_tables(
    tables: list[Path], input_dir: Path, output_dir: Path, settings: EngineSettings
) -> list[tuple[FileOutcome, int]]:
    """Each table's outcome, and how many of its rows were left out (patients the pseudonym
    table does not list, under unlisted_patients: quarantine)."""
    outcomes = []
    for path in tables:
        target = output_dir / path.relative_to(input_dir)
        try:
            report = anonymize_csv(path, target, settings)
        except CsvError as exc:
            where = f"line {exc.line}: " if exc.line is not None else ""
            column = f"column '{exc.column}': " if exc.column is not None else ""
            outcomes.append((FileOutcome("csv failed", path, f"{where}{column}{exc.reason}"), 0))
            continue
        written = FileOutcome("written", path, f"{report.rows} rows", output=target)
        outcomes.append((written, report.left_out))
    return outcomes


def _output_target(output_dir: Path, result: DeidResult) -> Path:
    return export_path(
        output_dir,
        result.patient_pseudonym or "NO-PATIENT",  # as the folder destination files it
        result.study_uid or "NO-STUDY",
        result.series_uid or "NO-SERIES",
        result.sop_instance_uid,
    )


def process_file(path: Path, output_dir: Path, claims: Path) -> FileOutcome:
    """One input file into the output tree (in a worker process)."""
    return deidentify_file(path, functools.partial(_output_target, output_dir), "offline", claims)


def process_files(paths: list[Path], output_dir: Path, claims: Path) -> list[FileOutcome]:
    """A pool task: several files, so that a large folder is not one task per file."""
    return [process_file(path, output_dir, claims) for path in paths]


def _alone(path: Path, output_dir: Path, claims: Path, settings: EngineSettings) -> FileOutcome:
    """One file that may have killed a worker, in a worker of its own: if that one dies too,
    the file is the cause and is held (a decoder's crash is the instance's trouble)."""
    with ProcessPoolExecutor(1, initializer=init_worker, initargs=(settings,)) as pool:
        try:
            return pool.submit(process_file, path, output_dir, claims).result()
        except BrokenProcessPool:
            pass
    remove_temporaries(output_dir)  # the dead worker may have been writing
    return held_for_dying(path, settings)


def held_for_dying(path: Path, settings: EngineSettings) -> FileOutcome:
    """A file that killed the worker it was given to, alone, too: held (a decoder's crash
    is the instance's trouble), here and on a cluster alike."""
    log.warning("a worker process died on one input file: quarantined")
    entry = quarantine.put(
        settings.storage_dir,
        path,
        reason="worker-died",
        stage="process",
        message="the worker process died while processing this file",
        origin="offline",
        keyed_hash=settings.keyed_hash(),
    )
    return FileOutcome("quarantined", path, f"worker-died: {entry.id}")


def _pooled(
    files: list[Path], output_dir: Path, claims: Path, settings: EngineSettings, workers: int
) -> Iterator[FileOutcome]:
    """Every file through a pool of `workers` processes, outcomes as they finish.

    At most two tasks per worker are handed out at a time, so when a worker dies the files
    it may have been on are known: each of those runs again alone (`_alone`) and the rest
    of the run goes on in a new pool. Files finished before the death are not lost: a file
    processed again finds its own output claim and its own quarantine entry.
    """
    size = max(1, min(32, len(files) // (workers * 4) or 1))
    waiting = deque(files[i : i + size] for i in range(0, len(files), size))
    while waiting:
        suspects: list[Path] = []
        with ProcessPoolExecutor(workers, initializer=init_worker, initargs=(settings,)) as pool:
            running: dict[Future[list[FileOutcome]], list[Path]] = {}
            while (waiting or running) and not suspects:
                while waiting and len(running) < 2 * workers:
                    part = waiting.popleft()
                    running[pool.submit(process_files, part, output_dir, claims)] = part
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    part = running.pop(future)
                    try:
                        yield from future.result()
                    except BrokenProcessPool:
                        suspects += part
                if suspects:  # any task still out may have been on the worker that died
                    suspects += [path for part in running.values() for path in part]
        if suspects:  # the pool is down: what its killed workers were writing is half-made
            remove_temporaries(output_dir)
        for path in suspects:
            yield _alone(path, output_dir, claims, settings)


def anonymize_folder(
    input_dir: Path,
    output_dir: Path,
    settings: EngineSettings,
    workers: int = 1,
    runner: FileRunner | None = None,
) -> Summary:
    """De-identify every file under `input_dir` into `output_dir`.

    One instance never stops the run: whatever goes wrong with it (short of the disk or a
    store failing, an OSError that stops the run with the inputs untouched) holds it in
    the quarantine with a reason. Two inputs for one output path: the first is written,
    the other quarantined as a duplicate (gateway.pipeline.output_claims). With `runner`,
    the DICOM files run there instead of in `workers` local processes; tables run here.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise NotADirectoryError(f"input folder not found: {input_dir}")
    if output_dir.resolve() == input_dir.resolve():
        raise ValueError("the output folder must not be the input folder")
    storage = settings.storage_dir.resolve()
    out = output_dir.resolve()
    if storage == out or storage.is_relative_to(out):
        raise ValueError("the storage folder (quarantine) must not be inside the output folder")
    open_storage_dir(settings.storage_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    summary = Summary()
    files, tables = [], []
    for path in input_files(input_dir, exclude=output_dir):
        (tables if is_clinical_table(path) else files).append(path)
    # This run's output claims: an output left by an earlier run is replaced, as before;
    # a second input for one output in this run is a duplicate.
    claims = settings.storage_dir / RUN_CLAIMS_DIR / secrets.token_hex(8)
    try:
        if runner is not None:
            for outcome in runner(files, output_dir, claims, settings):
                summary.add(outcome)
        elif workers <= 1:
            init_worker(settings)
            for path in files:
                summary.add(process_file(path, output_dir, claims))
        else:
            for outcome in _pooled(files, output_dir, claims, settings, workers):
                summary.add(outcome)
    finally:
        shutil.rmtree(claims, ignore_errors=True)
        with contextlib.suppress(OSError):
            claims.parent.rmdir()  # another run's claims may still be in it
    summary.problems.sort(key=lambda outcome: outcome.source)
    for outcome, left_out in _anonymize_tables(tables, input_dir, output_dir, settings):
        summary.add_csv(outcome, left_out)
    summary.seconds = time.monotonic() - started
    return summary
