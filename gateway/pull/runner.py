"""One pull run: check the gateway, resolve the request, retrieve what is missing, report.

Exit status: 0 when every study found was retrieved completely (keys that found nothing are
counted as not found, named by their position in the report and on stdout, and do not fail
the run: running it again would not find them either); 1 when anything could not be
retrieved or a peer failed (run the same command again to fetch what is missing); a dry
run exits 0 once the queries succeeded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from pynetdicom import evt

from gateway.keys.keyed_hash import KeyedHash
from gateway.pull.association import Peer, PullError, associate, echo
from gateway.pull.query import FoundStudy, InstanceRef, find_instances, find_studies, query_contexts
from gateway.pull.report import build_report
from gateway.pull.request import PullRequest, run_id
from gateway.pull.retrieve import (
    BatchResult,
    Receiver,
    batches,
    clear,
    get_batch,
    get_setup,
    move_batch,
    relay,
)
from gateway.pull.run_state import RunState, StudyState, write_json
from gateway.stores.pull_index import note_study

if TYPE_CHECKING:
    from pynetdicom.association import Association

__all__ = ["PullOptions", "PullSetup", "run_pull"]

EXIT_OK, EXIT_FAILURE = 0, 1
_MOVE_DESTINATION_UNKNOWN = 0xA801


@dataclass(frozen=True)
class PullSetup:
    source: Peer
    gateway: Peer
    own_ae: str  # listen.ae_title: the calling AE towards the source, the move destination
    retrieve: str  # "move" | "get"
    storage: Path
    keyed_hash: KeyedHash

    @property
    def folder(self) -> Path:
        return self.storage / "pull"


@dataclass(frozen=True)
class PullOptions:
    dry_run: bool = False
    batch_size: int = 50
    report: Path | None = None
    resume: str | None = None


class _Run:
    def __init__(
        self, setup: PullSetup, request: PullRequest, options: PullOptions, out: TextIO
    ) -> None:
        self.setup, self.request, self.options, self.out = setup, request, options, out
        self.run_id = options.resume or run_id(request, setup.keyed_hash)
        self.state = RunState.open(setup.folder, self.run_id)
        self.started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.studies: list[FoundStudy] = []
        self.hashes: list[str] = []
        self.not_found: list[str] = []
        self.matched = 0
        self.resolved = False  # the request was resolved: there is something to report
        self.receiver: Receiver | None = None

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> int:
        setup = self.setup
        verb = "dry run" if self.options.dry_run else f"retrieve by C-{setup.retrieve.upper()}"
        self.say(f"pull run {self.run_id}: {len(self.request.values)} {self.request.kind} "
                 f"keys, {verb} from {setup.source}")  # fmt: skip
        if not self.options.dry_run:
            echo(setup.gateway, setup.source.ae_title)  # the gateway must be running
        assoc = associate(setup.source, setup.own_ae, query_contexts())
        try:
            self.studies, self.not_found, self.matched = find_studies(assoc, self.request)
            self.resolved = True
            self.hashes = [setup.keyed_hash(s.study_uid) for s in self.studies]
            if self.options.dry_run:
                self._count_instances(assoc)
        finally:
            assoc.release()
        for study, key in zip(self.studies, self.hashes, strict=True):
            state = self.state.study(key)
            state.modalities = list(study.modalities)
            if state.expected is None or state.status != "complete":
                state.expected = study.expected if study.expected is not None else state.expected
        self.say(f"found {len(self.studies)} studies for {self.matched} of "
                 f"{len(self.request.values)} keys; not found: {len(self.not_found)}"
                 + (f" ({', '.join(self.not_found[:20])})" if self.not_found else ""))  # fmt: skip
        if self.options.dry_run:
            for number, key in enumerate(self.hashes, 1):
                state = self.state.study(key)
                done = " (already retrieved)" if state.status == "complete" else ""
                modalities = "/".join(state.modalities) or "?"
                self.say(f"  would pull study {number} [{key}]: {state.expected} instances, "
                         f"{modalities}{done}")  # fmt: skip
            return EXIT_OK
        self.state.runs += 1
        self.state.save()
        report = self.options.report or self.setup.folder / self.report_name
        for key in self.hashes:  # so the after-study hook is given this run's report
            note_study(self.setup.storage, key, report)
        for number, (study, key) in enumerate(zip(self.studies, self.hashes, strict=True), 1):
            state = self.state.study(key)
            if state.status == "complete":
                self.say(f"study {number}/{len(self.studies)} [{key}]: already retrieved")
                continue
            self._pull_study(number, study, key, state)
        complete = sum(self.state.study(k).status == "complete" for k in self.hashes)
        self.say(f"done: {complete}/{len(self.studies)} studies retrieved, "
                 f"{self._done()}/{self._expected()} instances")  # fmt: skip
        return EXIT_OK if complete == len(self.studies) else EXIT_FAILURE

    def _count_instances(self, assoc: Association) -> None:
        """A dry run's instance counts where the study query gave none."""
        for study, key in zip(self.studies, self.hashes, strict=True):
            state = self.state.study(key)
            if study.expected is None and state.status != "complete":
                state.expected = len(find_instances(assoc, study.study_uid))

    def _done(self) -> int:
        return sum(self.state.study(k).retrieved for k in self.hashes)

    def _expected(self) -> int:
        return sum(self.state.study(k).expected or 0 for k in self.hashes)

    def _progress(self, number: int, key: str, state: StudyState) -> None:
        complete = sum(self.state.study(k).status == "complete" for k in self.hashes)
        self.say(f"study {number}/{len(self.studies)} [{key}]: {state.retrieved}/"
                 f"{state.expected} instances; all: {complete}/{len(self.studies)} studies, "
                 f"{self._done()}/{self._expected()} instances")  # fmt: skip

    # -- one study ---------------------------------------------------------------------------

    def _pull_study(self, number: int, study: FoundStudy, key: str, state: StudyState) -> None:
        setup = self.setup
        assoc = associate(setup.source, setup.own_ae, query_contexts())
        try:
            instances = find_instances(assoc, study.study_uid)
            if setup.retrieve == "get":
                assoc.release()
                assoc = self._get_association(instances)
            done = set(state.done)
            hashes = {i.sop_instance_uid: setup.keyed_hash(i.sop_instance_uid) for i in instances}
            missing = [i for i in instances if hashes[i.sop_instance_uid] not in done]
            state.expected = len(instances)
            state.retrieved = len(instances) - len(missing)
            if missing:
                state.status = "partial"
            self._progress(number, key, state)
            for batch in batches(missing, self.options.batch_size):
                fetched = self._batch(assoc, batch)
                done.update(hashes[sop] for sop in fetched)
                state.done = sorted(done & set(hashes.values()))
                state.retrieved = len(state.done)
                state.failed = 0
                self.state.save()
                self._progress(number, key, state)
            state.failed = state.expected - state.retrieved
            if state.failed == 0 and state.expected > 0:
                state.status, state.done = "complete", []
            else:
                state.status = "failed"
            self.state.save()
        finally:
            if assoc.is_established:
                assoc.release()
            if self.receiver is not None:  # no identified file stays behind
                clear(self.receiver.folder)
                self.receiver = None

    def _get_association(self, instances: Sequence[InstanceRef]) -> Association:
        contexts, roles = get_setup(instances)
        incoming = self.setup.folder / self.run_id / "incoming"
        clear(incoming)
        self.receiver = Receiver(incoming, self.setup.keyed_hash)
        return associate(
            self.setup.source,
            self.setup.own_ae,
            contexts,
            roles=roles,
            handlers=[(evt.EVT_C_STORE, self.receiver.on_store)],
        )

    def _batch(self, assoc: Association, batch: list[InstanceRef]) -> list[str]:
        """The SOP Instance UIDs of the batch that are now at the gateway."""
        setup = self.setup
        if setup.retrieve == "move":
            result = move_batch(assoc, batch, setup.own_ae)
            self._check(result)
            return result.moved([i.sop_instance_uid for i in batch])
        assert self.receiver is not None
        result = get_batch(assoc, batch, self.receiver)
        self._check(result)
        forwarded: list[str] = []
        relay(self.receiver, setup.gateway, setup.source.ae_title, forwarded.append)
        return forwarded

    def _check(self, result: BatchResult) -> None:
        if result.status == _MOVE_DESTINATION_UNKNOWN:
            raise PullError(
                f"the {self.setup.source} does not know the move destination "
                f"{self.setup.own_ae} (add it to the archive's DICOM nodes as "
                f"{self.setup.gateway.host}:{self.setup.gateway.port})"
            )

    # -- the report --------------------------------------------------------------------------

    @property
    def report_name(self) -> str:
        return f"{self.run_id}.dry-run.json" if self.options.dry_run else f"{self.run_id}.json"

    def write_report(self) -> Path:
        path = self.options.report or self.setup.folder / self.report_name
        report = build_report(
            self.state,
            started=self.started,
            dry_run=self.options.dry_run,
            retrieve=self.setup.retrieve,
            request_kind=self.request.kind,
            requested=len(self.request.values),
            matched=self.matched,
            not_found=self.not_found,
            study_hashes=self.hashes,
            audit=self.setup.storage / "audit.jsonl",
        )
        write_json(path, report)
        return path


def run_pull(
    setup: PullSetup, request: PullRequest, options: PullOptions, out: TextIO, err: TextIO
) -> int:
    """The whole run, progress on `out`; PullError (a peer down, a refused association)
    becomes exit 1, its message on `err`, with the state saved and the report written for
    what was done."""
    try:
        run = _Run(setup, request, options, out)
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or another run's state
        print(f"error: cannot read the run state under {setup.folder}: {exc}", file=err)
        return EXIT_FAILURE
    try:
        status = run.run()
    except PullError as exc:
        print(f"error: {exc}", file=err, flush=True)
        status = EXIT_FAILURE
        if not run.options.dry_run and run.state.runs:
            _saved(run.state.save, err)
    except OSError as exc:  # the run state or a received file could not be written
        print(f"error: cannot write under {setup.folder}: {exc.strerror or exc}", file=err)
        return EXIT_FAILURE
    if run.resolved:
        if _saved(run.write_report, err) == EXIT_OK:
            run.say(f"report: {options.report or setup.folder / run.report_name}")
        else:
            status = EXIT_FAILURE
    return status


def _saved(write: Callable[[], object], err: TextIO) -> int:
    try:
        write()
    except OSError as exc:
        print(f"error: cannot write the run state or report: {exc.strerror or exc}", file=err)
        return EXIT_FAILURE
    return EXIT_OK
