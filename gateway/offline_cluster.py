"""Offline mode on a Dask cluster: `anonymize --cluster tcp://HOST:PORT | local:N`.

The files go to Dask workers in batches instead of the local process pool; everything else
is the local run's (`gateway.offline.anonymize_folder`): the same walk, the same per-file
code (`process_file`), the same output claims for duplicate SOP Instance UIDs, the same
summary; clinical tables run afterwards in the client, as they do locally. So the output is
the same, byte for byte, as a local run's.

The site's secret never crosses the network: each worker loads the site itself from the
configuration file, at the same path on a shared filesystem, once per run (a cached global,
as `init_worker` in a local pool), and proves it holds the same secret by a keyed hash.
A task's arguments print as "<batch of N files>": Dask's log of a failed task shows no path.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from gateway.offline import held_for_dying, process_file
from gateway.pipeline.files import EngineSettings, FileOutcome, init_worker, remove_temporaries
from gateway.pipeline.instance import is_environment_error

if TYPE_CHECKING:
    from distributed import Client, Future

log = logging.getLogger(__name__)

__all__ = ["ClusterError", "ClusterRunner", "SiteKey", "connect", "parse_cluster"]

INSTALL_HINT = "pip install 'dicom-gateway[cluster]'"
CONNECT_SECONDS = 5.0  # a scheduler on the network answers in milliseconds
WORKERS_SECONDS = 30.0  # for the first worker to join a scheduler that has none yet
STALL_SECONDS = 3600.0  # no task finished for this long: the cluster is stuck
RETRIES = 2  # Dask's own retries of a task that raised (a shared filesystem's hiccup)
ATTEMPTS = 2  # tasks of a file alone whose worker died (KilledWorker): then held
PROGRESS_SECONDS = 1.0  # at most one progress line a second (and the last one)
_CHECK = "dicom-gateway cluster check"


class ClusterError(Exception):
    """The cluster cannot do the run; `exit_code` 1 (runtime) or 2 (set-up)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- the cluster ---------------------------------------------------------------------------


def parse_cluster(spec: str) -> tuple[str, str | int]:
    """("tcp", address) or ("local", worker count); ValueError says what is accepted."""
    if spec.startswith("tcp://") and len(spec) > len("tcp://"):
        return "tcp", spec
    count = spec.removeprefix("local:")
    if spec.startswith("local:") and count.isdigit() and 1 <= int(count) <= 256:
        return "local", int(count)
    raise ValueError(f"--cluster takes tcp://HOST:PORT or local:N (N from 1 to 256), not {spec!r}")


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ClusterError(
            f"--cluster needs Dask distributed, which is not installed: {INSTALL_HINT}", 2
        ) from None
    return distributed


@contextmanager
def connect(spec: str) -> Iterator[Client]:
    """A client of the scheduler `spec` names (or of a new LocalCluster), with at least one
    worker; ClusterError (exit 1) when the scheduler cannot be reached in time."""
    distributed = _distributed()
    kind, where = parse_cluster(spec)
    cluster = None
    if kind == "local":
        # Worker processes on this machine, one thread each: each builds its own engine.
        try:
            cluster = distributed.LocalCluster(
                n_workers=int(where),
                host="127.0.0.1",  # its scheduler and workers listen on loopback only
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.WARNING,
            )
        except (OSError, RuntimeError, TimeoutError) as exc:
            raise ClusterError(f"cannot start {where} local Dask workers ({exc})") from None
        address = cluster.scheduler_address
    else:
        address = str(where)
    try:
        try:
            client = distributed.Client(address, timeout=CONNECT_SECONDS)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {address} within {CONNECT_SECONDS:.0f} s "
                f"({type(exc).__name__}); is `dask scheduler` running there?"
            ) from None
        try:
            try:
                client.wait_for_workers(1, timeout=WORKERS_SECONDS)
            except (OSError, TimeoutError):
                raise ClusterError(
                    f"the Dask scheduler at {address} has no worker "
                    f"(none joined within {WORKERS_SECONDS:.0f} s)"
                ) from None
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def _version() -> str:
    with suppress(metadata.PackageNotFoundError):
        return metadata.version("dicom-gateway")
    return "unknown"  # not installed: run from a source tree


# --- on the workers ------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteKey:
    """Which site a worker loads (the configuration file at the same path as in the client)
    and what it must find there; `run` makes each run load it afresh, once per worker."""

    config: str
    ocr: bool | None
    run: str
    fingerprint: str  # a keyed hash of a constant: the same secret, never the secret
    config_digest: str  # SHA-256 of the configuration file's bytes
    version: str

    @staticmethod
    def for_site(config: Path, ocr: bool | None, settings: EngineSettings) -> SiteKey:
        path = Path(config).absolute()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        fingerprint = settings.keyed_hash()(_CHECK, 32)
        return SiteKey(str(path), ocr, secrets.token_hex(8), fingerprint, digest, _version())


class WorkerSetupError(Exception):
    """A worker cannot load the site (each problem names file and key, never a value)."""


class WorkerEnvironmentError(Exception):
    """A worker's disk or store failed: args (errno, text), never the path."""


class WorkerTaskError(Exception):
    """Something no file should cause (a bug): its type name only."""


_lock = threading.Lock()  # one engine per worker process, used by one thread at a time
_loaded: SiteKey | None = None


def _load_site(key: SiteKey) -> None:
    """The site of `key` in this worker process (once per run), or WorkerSetupError."""
    global _loaded
    if _loaded == key:
        return
    from gateway.site import SiteError, load_site

    problems = []
    if key.version != _version():
        problems.append(f"dicom-gateway {_version()} here, {key.version} in the client")
    try:
        digest = hashlib.sha256(Path(key.config).read_bytes()).hexdigest()
        if digest != key.config_digest:
            problems.append(f"{key.config}: not the client's file (another copy?)")
        settings = load_site(Path(key.config), ocr=key.ocr).engine_settings()
    except OSError as exc:
        raise WorkerSetupError([f"{key.config}: cannot read it ({exc.strerror})"]) from None
    except SiteError as exc:
        raise WorkerSetupError(list(exc.problems)) from None
    if settings.keyed_hash()(_CHECK, 32) != key.fingerprint:
        problems.append(f"{key.config}: 'keys.secret' is not the client's site secret")
    if problems:
        raise WorkerSetupError(problems)
    init_worker(settings)
    _loaded = key


def check_worker(key: SiteKey, input_dir: str, samples: list[tuple[str, int]]) -> list[str]:
    """Run on each worker before any task: what it cannot see or load (empty: ready)."""
    if not Path(input_dir).is_dir():
        return [f"cannot see the input folder {input_dir} (not on a shared filesystem?)"]
    for path, size in samples:
        try:
            if os.stat(path).st_size != size:
                return [f"sees another input folder at {input_dir} (a file differs)"]
        except OSError:
            return [f"sees another input folder at {input_dir} (a file is missing)"]
    try:
        with _lock:
            _load_site(key)
    except WorkerSetupError as exc:
        return list(exc.args[0])
    return []


def _check_marker(marker: str, token: str) -> bool:
    with suppress(OSError):
        return Path(marker).read_text(encoding="ascii") == token
    return False


@dataclass(frozen=True)
class Batch:
    """Files for one task; its repr names no path (Dask logs a failed task's arguments)."""

    paths: tuple[str, ...]
    output_dir: str
    claims: str

    def __repr__(self) -> str:
        return f"<batch of {len(self.paths)} files>"


def run_batch(key: SiteKey, batch: Batch) -> list[FileOutcome]:
    """A Dask task: each file of `batch` through the worker's engine, as `process_files`.
    What it raises carries no path or value: the error's type, errno and text only."""
    try:
        with _lock:
            _load_site(key)
            output, claims = Path(batch.output_dir), Path(batch.claims)
            return [process_file(Path(path), output, claims) for path in batch.paths]
    except WorkerSetupError:
        raise
    except Exception as exc:
        if is_environment_error(exc):
            errno = getattr(exc, "errno", None)
            strerror = getattr(exc, "strerror", None) or type(exc).__name__
            raise WorkerEnvironmentError(errno, strerror) from None
        raise WorkerTaskError(type(exc).__name__) from None


# --- in the client -------------------------------------------------------------------------


class BatchTask(Protocol):
    def __call__(self, key: SiteKey, batch: Batch) -> list[FileOutcome]: ...


@dataclass
class _Progress:
    """Files done of all, by outcome, and studies written to: no name, no path, no UID."""

    total: int
    out: TextIO
    done: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    studies: set[str] = field(default_factory=set)
    shown: float = 0.0

    def add(self, outcomes: list[FileOutcome]) -> None:
        for outcome in outcomes:
            self.done += 1
            self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
            if outcome.study_uid:
                self.studies.add(outcome.study_uid)
        now = time.monotonic()
        if self.done >= self.total or now - self.shown >= PROGRESS_SECONDS:
            self.shown = now
            counts = ", ".join(f"{status} {n}" for status, n in sorted(self.counts.items()))
            line = f"cluster: {self.done}/{self.total} files done ({counts}); studies written to"
            print(f"{line}: {len(self.studies)}", file=self.out, flush=True)


@dataclass
class ClusterRunner:
    """The executor seam of `anonymize_folder` (`runner=`): files to outcomes on a cluster.

    At most two tasks per worker thread are out at a time. A task whose worker died (Dask
    retries it on another worker, then reports KilledWorker) makes each of its files a
    suspect; suspects run one at a time, each in a task of its own, so one poison file does
    not take an innocent suspect with it; a suspect that kills its worker `ATTEMPTS` times
    is quarantined as `worker-died`, as the local pool does.
    """

    client: Client
    key: SiteKey
    input_dir: Path
    progress: TextIO = sys.stderr
    task: BatchTask = run_batch
    deaths: int = 0

    def __call__(
        self, files: list[Path], output_dir: Path, claims: Path, settings: EngineSettings
    ) -> Iterator[FileOutcome]:
        self._check_workers(files)
        self._check_shared(output_dir, claims)
        threads = max(1, sum(self.client.nthreads().values()))
        size = max(1, min(32, len(files) // (threads * 4) or 1))
        waiting = deque(files[i : i + size] for i in range(0, len(files), size))
        suspects: deque[tuple[Path, int]] = deque()  # (file, its deaths alone so far)
        progress = _Progress(len(files), self.progress)
        running: dict[Future, tuple[list[Path], int | None]] = {}  # None: not a suspect
        workers_at_start = set(self.client.nthreads())
        try:
            # Each pass finishes a task; a file is in one batch and is a suspect at most
            # ATTEMPTS times, so the passes are bounded by the batches and the files.
            for _ in range(len(waiting) + len(files) * ATTEMPTS + 1):
                if not (waiting or suspects or running):
                    break
                if suspects and all(deaths is None for _, deaths in running.values()):
                    path, deaths = suspects.popleft()
                    running[self._submit([path], output_dir, claims)] = ([path], deaths)
                while waiting and len(running) < 2 * threads:
                    part = waiting.popleft()
                    running[self._submit(part, output_dir, claims)] = (part, None)
                for future in self._finished(running):
                    part, deaths = running.pop(future)
                    outcomes = self._outcomes(future, part, deaths, suspects, settings)
                    progress.add(outcomes)
                    yield from outcomes
            else:  # never, by the bound above; a file left out must not go unnoticed
                raise ClusterError("the run used up its bound of tasks with files left")
        finally:
            if running:
                self.client.cancel(list(running))
        if self.deaths or set(self.client.nthreads()) != workers_at_start:
            remove_temporaries(output_dir)  # a worker that died may have been writing

    def _submit(self, part: list[Path], output_dir: Path, claims: Path) -> Future:
        batch = Batch(
            tuple(str(p.absolute()) for p in part), str(output_dir.absolute()), str(claims)
        )
        name = f"dicom-gateway-{self.key.run}-{secrets.token_hex(6)}"
        return self.client.submit(self.task, self.key, batch, key=name, retries=RETRIES)

    def _finished(self, running: dict[Future, tuple[list[Path], int]]) -> list[Future]:
        distributed = _distributed()
        try:
            done, _ = distributed.wait(
                list(running), timeout=STALL_SECONDS, return_when="FIRST_COMPLETED"
            )
        except TimeoutError:
            raise ClusterError(f"no task finished in {STALL_SECONDS:.0f} s: stopped") from None
        return list(done)

    def _outcomes(
        self,
        future: Future,
        part: list[Path],
        deaths: int | None,
        suspects: deque[tuple[Path, int]],
        settings: EngineSettings,
    ) -> list[FileOutcome]:
        distributed = _distributed()
        try:
            found = future.result()
        except distributed.KilledWorker:
            self.deaths += 1
            if deaths is None:  # one of these (or a neighbour) killed it: each alone tells
                suspects.extend((path, 0) for path in part)
                return []
            if deaths + 1 < ATTEMPTS:
                suspects.append((part[0], deaths + 1))
                return []
            return [held_for_dying(part[0], settings)]
        except WorkerEnvironmentError as exc:
            # As in a local run: the machine's trouble stops the run, inputs untouched.
            raise OSError(exc.args[0], f"on a worker: {exc.args[1]}") from None
        except WorkerSetupError as exc:
            problems = "; ".join(exc.args[0])
            raise ClusterError(f"a worker cannot load the site: {problems}", 2) from None
        except WorkerTaskError as exc:
            raise ClusterError(f"a task failed on a worker ({exc.args[0]})") from None
        except (Exception, asyncio.CancelledError) as exc:  # the scheduler went, a cancel
            raise ClusterError(f"lost the Dask cluster ({type(exc).__name__})") from None
        # The client's own paths, as a local run reports them.
        return [replace(outcome, source=path) for outcome, path in zip(found, part, strict=True)]

    def _check_workers(self, files: list[Path]) -> None:
        """Every worker sees the input folder (the same one: sample files' sizes) and loads
        the same site, or ClusterError (exit 2) naming the worker and what it lacks."""
        picked = {files[0], files[len(files) // 2], files[-1]} if files else set()
        samples = [(str(p.absolute()), p.stat().st_size) for p in sorted(picked)]
        where = str(self.input_dir.absolute())
        answers = self.client.run(check_worker, self.key, where, samples, on_error="return")
        failed = lambda exc: [f"cannot be checked ({type(exc).__name__})"]  # noqa: E731
        problems = [
            f"worker {w}: {p}"
            for w, found in sorted(answers.items())
            for p in (found if isinstance(found, list) else failed(found))
        ]
        if problems:
            raise ClusterError("\n".join(problems), 2)

    def _check_shared(self, output_dir: Path, claims: Path) -> None:
        """The workers write into the client's output and storage folders, not into folders
        of their own at the same paths (a marker file the client wrote, read back)."""
        token = secrets.token_hex(16)
        claims.mkdir(parents=True, exist_ok=True)
        markers = [output_dir / f".tmp-cluster-{token}", claims / f".tmp-cluster-{token}"]
        try:
            for marker in markers:
                marker.write_text(token, encoding="ascii")
            for marker, what in zip(markers, ("output folder", "storage folder"), strict=True):
                seen = self.client.run(_check_marker, str(marker.absolute()), token)
                blind = sorted(worker for worker, ok in seen.items() if not ok)
                if blind:
                    raise ClusterError(
                        f"worker {blind[0]}: cannot see the {what} "
                        f"{marker.parent.absolute()} (not on a shared filesystem?)",
                        2,
                    )
        finally:
            for marker in markers:
                with suppress(OSError):
                    marker.unlink()
