"""After-study hooks: a command and/or an HTTP POST run when a study round is forwarded.

Research sites link forwarded studies to their own databases this way. A hook is given a
`StudyForwarded` event, which holds pseudonymous data only (pseudonymous study UIDs, the
study's keyed hash, counts, the destination's name, the result, a report's path): there is
no field an original identifier could travel in. Each run writes one `after_study_hook`
audit record (which hook, its outcome, exit or HTTP status, seconds, the last 4 KiB of its
output). A hook that fails, times out, cannot start or cannot connect is recorded and
logged as a warning, never raised: `study_forwarded` only queues the event and returns, the
hooks run on worker threads, so forwarding is never blocked or delayed by a hook.

The interface a hook sees (environment variables, JSON, exit status) is in docs/hooks.md;
how a command or a POST is run and bounded is in `hook_runs`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import PurePath

from gateway.config.schema import AfterStudyHook
from gateway.service.hook_runs import (
    OUTPUT_LIMIT,
    Outcome,
    http_opener,
    post,
    run_command,
    url_host,
)
from gateway.stores.audit import AuditLog

__all__ = ["AUDIT_EVENT", "OUTPUT_LIMIT", "AfterStudyHooks", "StudyForwarded"]

log = logging.getLogger(__name__)

AUDIT_EVENT = "after_study_hook"
ENV_PREFIX = "DICOM_GATEWAY_"

_LOCALE = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_HEX = re.compile(r"[0-9a-f]{8,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _checked_text(name: str, value: object, limit: int = 256) -> None:
    if not isinstance(value, str) or len(value) > limit or _CONTROL.search(value):
        raise ValueError(f"StudyForwarded.{name} must be a line of text (at most {limit})")


@dataclass(frozen=True)
class StudyForwarded:
    """What a hook is given: pseudonymous data only.

    `pseudo_study_uids` are the round's study UIDs after de-identification, `study_hash`
    the study's keyed hash (what the audit's `study_round` record and the logs name it by),
    `round` the round's number, `destination` the destination's configured name, `result`
    the round's outcome ("forwarded"), `report` a run report's path (or None). The formats
    are checked, so a value that could not be a pseudonym (a name in a UID field) is refused.
    """

    pseudo_study_uids: tuple[str, ...]
    study_hash: str
    round: int
    instances_out: int
    instances_quarantined: int
    destination: str
    result: str
    report: str | None = None

    def __post_init__(self) -> None:
        uids = self.pseudo_study_uids
        if isinstance(uids, list):  # what a round's result holds
            uids = tuple(uids)
            object.__setattr__(self, "pseudo_study_uids", uids)
        if not isinstance(uids, tuple) or not all(
            isinstance(uid, str) and len(uid) <= 64 and _UID.fullmatch(uid) for uid in uids
        ):
            raise ValueError("StudyForwarded.pseudo_study_uids must be a tuple of DICOM UIDs")
        if not isinstance(self.study_hash, str) or not _HEX.fullmatch(self.study_hash):
            raise ValueError("StudyForwarded.study_hash must be a keyed hash (8-64 hex digits)")
        for name in ("round", "instances_out", "instances_quarantined"):
            number = getattr(self, name)
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise ValueError(f"StudyForwarded.{name} must be a count (an int >= 0)")
        _checked_text("destination", self.destination)
        _checked_text("result", self.result, 64)
        if self.report is not None:
            _checked_text("report", self.report, 4096)

    def as_json(self) -> dict[str, object]:
        """The event as hooks receive it: `{"event": "after_study", ...the fields}`."""
        fields: dict[str, object] = asdict(self)
        fields["pseudo_study_uids"] = list(self.pseudo_study_uids)
        return {"event": "after_study", **fields}

    def environment(self) -> dict[str, str]:
        """The DICOM_GATEWAY_* variables a command hook gets (docs/hooks.md)."""
        uids = self.pseudo_study_uids
        values = {
            "EVENT": "after_study",
            "STUDY_UID": uids[0] if uids else "",
            "STUDY_UIDS": " ".join(uids),
            "STUDY_HASH": self.study_hash,
            "ROUND": str(self.round),
            "INSTANCES_OUT": str(self.instances_out),
            "INSTANCES_QUARANTINED": str(self.instances_quarantined),
            "DESTINATION": self.destination,
            "RESULT": self.result,
            "REPORT": self.report or "",
            "EVENT_JSON": json.dumps(self.as_json(), separators=(",", ":")),
        }
        return {ENV_PREFIX + name: value for name, value in values.items()}


class AfterStudyHooks:
    """Runs the configured after-study hook(s) for each forwarded study, off the caller's
    thread, and audits every run.

    With `config` None, `study_forwarded` does nothing. Events wait in a queue of at most
    `max_pending`; one that finds it full is audited as not_run rather than held in memory
    without bound while a hook hangs.
    """

    def __init__(
        self,
        config: AfterStudyHook | None,
        audit: AuditLog,
        *,
        threads: int = 2,
        max_pending: int = 1000,
    ) -> None:
        if threads < 1 or max_pending < 1:
            raise ValueError("threads and max_pending must be at least 1")
        self._config = config
        self._audit = audit
        self._max_pending = max_pending
        self._jobs: deque[tuple[str, StudyForwarded]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._stop_now = threading.Event()
        self._opener = http_opener() if config is not None and config.url else None
        self._thread_count = threads
        # Started at the first event, not here: no thread of ours exists when the service
        # forks its worker processes after making this object.
        self._threads: list[threading.Thread] = []

    @property
    def configured(self) -> bool:
        return self._config is not None

    def study_forwarded(self, event: StudyForwarded) -> None:
        """Queue the hooks for `event` and return at once; never raises."""
        config = self._config
        if config is None:
            return
        kinds = [kind for kind, on in (("command", config.command), ("url", config.url)) if on]
        try:
            with self._cond:
                if not self._closed and len(self._jobs) + len(kinds) <= self._max_pending:
                    self._start_threads()
                    self._jobs.extend((kind, event) for kind in kinds)
                    self._cond.notify(len(kinds))
                    return
                why = "the gateway is stopping" if self._closed else "too many hooks waiting"
            for kind in kinds:
                self._finish(kind, event, Outcome("not_run", error=why), 0.0)
        except Exception:  # the caller is forwarding: a hook's trouble must not reach it
            log.exception("after-study hook for study %s not queued", event.study_hash)

    def shutdown(self, timeout: float) -> None:
        """Take no more events; let queued and running hooks finish for up to `timeout`
        seconds, then kill the commands still running and audit the ones not started (and
        wait up to 2 s more for the killed ones' records). An HTTP request still waiting
        for its answer is left to its own timeout on its daemon thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        deadline = time.monotonic() + max(0.0, timeout)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            self._stop_now.set()
            left = list(self._jobs)
            self._jobs.clear()
        for kind, event in left:
            self._finish(kind, event, Outcome("not_run", error="the gateway is stopping"), 0.0)
        end = time.monotonic() + 2.0  # killed commands write their records
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))

    # -- the worker threads -------------------------------------------------------------

    def _start_threads(self) -> None:
        for n in range(len(self._threads), self._thread_count):
            name = f"after-study-hook-{n}"
            thread = threading.Thread(target=self._work, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._jobs or self._stop_now.is_set():
                    return
                kind, event = self._jobs.popleft()
            try:
                self._run(kind, event)
            except Exception:  # a bug here must not stop the thread serving the others
                log.exception("after-study hook (%s) for study %s", kind, event.study_hash)

    def _run(self, kind: str, event: StudyForwarded) -> None:
        config = self._config
        assert config is not None
        start = time.monotonic()
        if kind == "command":
            assert config.command is not None
            # A clean environment: nothing of the gateway's own, which may hold anything.
            env = {"PATH": os.environ.get("PATH", os.defpath), **_LOCALE, **event.environment()}
            outcome = run_command(
                list(config.command), env, config.timeout_seconds, self._stop_now.is_set
            )
        else:
            assert config.url is not None
            assert self._opener is not None
            body = json.dumps(event.as_json(), separators=(",", ":")).encode("utf-8")
            outcome = post(self._opener, config.url, body, config.timeout_seconds)
        self._finish(kind, event, outcome, time.monotonic() - start)

    def _finish(self, kind: str, event: StudyForwarded, outcome: Outcome, seconds: float) -> None:
        config = self._config
        assert config is not None
        if kind == "command":
            target = PurePath(config.command[0]).name if config.command else "?"
        else:
            target = url_host(config.url or "")
        fields = {
            "hook": kind,
            "target": target,
            "outcome": outcome.outcome,
            "exit_status" if kind == "command" else "http_status": outcome.status,
            "seconds": round(seconds, 3),
            "output": outcome.output,
            "error": outcome.error,
            **asdict(event),
        }
        try:
            self._audit.record(AUDIT_EVENT, **fields)
        except Exception:
            log.exception("after-study hook (%s %s): audit record not written", kind, target)
        if outcome.outcome != "succeeded":
            status = "" if outcome.status is None else f" (status {outcome.status})"
            log.warning("after-study hook %s %s for study %s round %d: %s%s%s",
                        kind, target, event.study_hash, event.round, outcome.outcome, status,
                        f": {outcome.error}" if outcome.error else "")  # fmt: skip
