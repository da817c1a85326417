"""The forwarding SCU in its own process (gateway/service/sender_process.py), against a real
DCMTK storescp: confirmations come back as they happen, a killed sender loses nothing (its
sends end in RETRY and a new one sends the rest), and the gateway forks one per AE
destination."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from peers import run_storescp
from pydicom import dcmread
from service_harness import (
    ae_destination,
    child_pids,
    create_secret,
    make_site,
    received_files,
    running_gateway,
    storescu,
    wait_until,
)

from gateway.net.kept_associations import KeptAssociations
from gateway.net.outcome import ForwardOutcome
from gateway.service.forwarding import AeDestination
from gateway.service.sender_process import ProcessDestination
from gateway.tools.synthetic import make_ct_study, random_patient

pytestmark = pytest.mark.timeout(180)


def _sop_uids(files: list[Path]) -> set[str]:
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}


def _arrived(folder: Path) -> set[str]:
    return {r.sop_instance_uid for r in received_files(folder)}


def test_a_sender_process_sends_and_reports_each_confirmation(tmp_path: Path) -> None:
    files = make_ct_study(tmp_path / "in", instances=6, rows=16, columns=16)
    with run_storescp(tmp_path / "archive") as archive:
        destination = ProcessDestination(
            AeDestination(
                "ARCHIVE", "127.0.0.1", archive.port, "DEID_GW", kept=KeptAssociations(5.0)
            )
        )
        try:
            assert destination.pid not in (None, os.getpid())
            assert destination.pid in child_pids(os.getpid())
            stored: list[Path] = []
            result = destination.send(files, stored.append, round_id=1)
            destination.round_done(1)
            assert result.outcome is ForwardOutcome.OK, result.message
            assert result.sent == len(files)
            assert sorted(stored) == sorted(files)  # each reported back, as a path
            assert _arrived(tmp_path / "archive") == _sop_uids(files)
        finally:
            destination.close()
    assert destination.send(files, stored.append).outcome is ForwardOutcome.RETRY  # closed


def test_a_killed_sender_ends_its_sends_in_retry_and_the_next_one_sends_the_rest(
    tmp_path: Path,
) -> None:
    files = make_ct_study(tmp_path / "in", instances=150, rows=64, columns=64)
    with run_storescp(tmp_path / "archive") as archive:
        destination = ProcessDestination(
            AeDestination("ARCHIVE", "127.0.0.1", archive.port, "DEID_GW", kept=None)
        )
        try:
            first_pid = destination.pid
            assert first_pid is not None
            stored: list[Path] = []
            some_stored = threading.Event()

            def note(path: Path) -> None:
                stored.append(path)
                if len(stored) == 5:
                    some_stored.set()

            killer = threading.Thread(
                target=lambda: some_stored.wait(30) and os.kill(first_pid, signal.SIGKILL)
            )
            killer.start()
            result = destination.send(files, note, round_id=1)
            killer.join(timeout=30)
            assert result.outcome is ForwardOutcome.RETRY, result.message
            assert 5 <= len(stored) < len(files)
            confirmed = set(stored)
            # What was confirmed did arrive (storescp writes each file before answering).
            assert _sop_uids(list(confirmed)) <= _arrived(tmp_path / "archive")

            rest = [f for f in files if f not in confirmed]
            again: list[Path] = []
            result = destination.send(rest, again.append, round_id=1)
            assert result.outcome is ForwardOutcome.OK, result.message
            assert destination.pid not in (None, first_pid)
            assert sorted(again) == sorted(rest)
            assert _arrived(tmp_path / "archive") == _sop_uids(files)
        finally:
            destination.close()


def test_the_gateway_forwards_from_a_child_and_survives_its_death(tmp_path: Path) -> None:
    """One worker and one sender under the service; the sender killed between two studies
    is forked again, and both studies arrive whole."""
    first = make_ct_study(tmp_path / "a", instances=4, rows=16, columns=16,
                          patient=random_patient(31), seed=31)  # fmt: skip
    second = make_ct_study(tmp_path / "b", instances=4, rows=16, columns=16,
                           patient=random_patient(32), seed=32)  # fmt: skip
    with run_storescp(tmp_path / "archive") as archive:
        site = make_site(tmp_path / "site", create_secret(tmp_path / "keys"),
                         destination=ae_destination(archive.port), quiet_seconds=0.5,
                         workers=1)  # fmt: skip
        with running_gateway(site) as gateway:
            assert storescu(site.listen_port, first).acknowledged == first
            wait_until(lambda: len(received_files(tmp_path / "archive")) == 4, timeout=60,
                       what="the first study at the archive")  # fmt: skip
            children = child_pids(gateway.pid)
            assert len(children) == 2, children  # the worker and the sender
            senders = [pid for pid in children if _threads(pid) > 1 and _is_sender(pid)]
            assert len(senders) == 1, children
            os.kill(senders[0], signal.SIGKILL)
            time.sleep(0.2)

            assert storescu(site.listen_port, second).acknowledged == second
            wait_until(lambda: len(received_files(tmp_path / "archive")) == 8, timeout=60,
                       what="the second study at the archive")  # fmt: skip
            assert gateway.alive()
            assert "forwarding to ARCHIVE" in gateway.log()
    assert len(received_files(tmp_path / "archive")) == 8


def test_the_sender_ends_the_moment_the_service_dies(tmp_path: Path) -> None:
    """What a sender would go on sending after a crash of the service could not be recorded
    as confirmed, and would be sent twice: it ends within a few hundredths of a second."""
    site = make_site(tmp_path / "site", create_secret(tmp_path / "keys"),
                     destination=ae_destination(9), workers=1)  # fmt: skip
    with running_gateway(site) as gateway:
        (sender,) = [p for p in child_pids(gateway.pid) if _is_sender(p)]
        os.kill(gateway.pid, signal.SIGKILL)
        gateway.process.wait(timeout=10)
        began = time.monotonic()
        wait_until(lambda: not _alive(sender), timeout=5, interval=0.01, what="the sender's end")
        assert time.monotonic() - began < 1.0


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def _is_sender(pid: int) -> bool:
    """The sender ignores SIGTERM (the service stops it); a worker does not."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    ignored = int(next(line.split()[1] for line in status.splitlines()
                       if line.startswith("SigIgn:")), 16)  # fmt: skip
    return bool(ignored & (1 << (signal.SIGTERM - 1)))
